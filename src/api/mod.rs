//! The gRPC edge: validates requests, calls the use cases in
//! [`crate::balancer`], maps results to protobuf and errors to
//! `tonic::Status` (in [`error`], the one place that does it).
//!
//! Only this module knows protobuf types.

pub mod auth;
mod convert;
pub mod error;
mod stream;
pub mod validate;

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::{
    balancer::Balancer,
    pb::{self, wallet_balancer_server::WalletBalancer},
};

/// The `walletbalancer.v1.WalletBalancer` service.
#[derive(Clone)]
pub struct WalletBalancerApi {
    balancer: Arc<Balancer>,
}

impl WalletBalancerApi {
    pub fn new(balancer: Arc<Balancer>) -> Self {
        WalletBalancerApi { balancer }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ConversionEvent, Status>> + Send>>;

#[tonic::async_trait]
impl WalletBalancer for WalletBalancerApi {
    #[tracing::instrument(name = "EnsureEth", skip_all, fields(rpc.method = "EnsureEth", chain = %request.get_ref().chain, request_id = %request.get_ref().request_id))]
    async fn ensure_eth(
        &self,
        request: Request<pb::EnsureEthRequest>,
    ) -> Result<Response<pb::EnsureEthResponse>, Status> {
        let req = validate::ensure_eth(&self.balancer, request.get_ref())?;
        let report = self
            .balancer
            .ensure_eth(req)
            .await
            .map_err(error::to_status)?;
        Ok(Response::new(convert::ensure_response(&report)))
    }

    #[tracing::instrument(name = "GetStatus", skip_all, fields(rpc.method = "GetStatus", chain = %request.get_ref().chain))]
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::WalletStatus>, Status> {
        let chain = validate::chain(&self.balancer, &request.get_ref().chain)?;
        let report = self
            .balancer
            .status(chain)
            .await
            .map_err(error::to_status)?;
        Ok(Response::new(convert::wallet_status(&report)))
    }

    type StreamConversionsStream = EventStream;

    #[tracing::instrument(name = "StreamConversions", skip_all, fields(rpc.method = "StreamConversions"))]
    async fn stream_conversions(
        &self,
        request: Request<pb::StreamConversionsRequest>,
    ) -> Result<Response<Self::StreamConversionsStream>, Status> {
        let req = request.into_inner();
        let chain = if req.chain.is_empty() {
            None
        } else {
            Some(validate::chain(&self.balancer, &req.chain)?.to_string())
        };
        let rx = stream::spawn(self.balancer.journal().clone(), req.after_sequence, chain);
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
