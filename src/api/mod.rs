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
    #[tracing::instrument(
        name = "EnsureEth",
        skip_all,
        fields(
            rpc.method = "EnsureEth",
            chain = %request.get_ref().chain,
            request_id = %request.get_ref().request_id,
            required_wei = %request.get_ref().required_wei,
            dry_run = request.get_ref().dry_run,
            outcome = tracing::field::Empty,
            conversions = tracing::field::Empty,
            eth_after = tracing::field::Empty,
        )
    )]
    async fn ensure_eth(
        &self,
        request: Request<pb::EnsureEthRequest>,
    ) -> Result<Response<pb::EnsureEthResponse>, Status> {
        let req = validate::ensure_eth(&self.balancer, request.get_ref())?;
        let chain = req.chain.clone();
        let span = tracing::Span::current();
        let report = match self.balancer.ensure_eth(req).await {
            Ok(r) => r,
            Err(e) => {
                span.record("outcome", "error");
                crate::telemetry::metrics::ensure_eth(&chain, "error");
                return Err(error::to_status(e));
            }
        };
        let outcome = crate::telemetry::outcome_name(report.outcome);
        span.record("outcome", outcome);
        span.record("conversions", report.conversions.len());
        span.record("eth_after", tracing::field::display(report.eth_after));
        crate::telemetry::metrics::ensure_eth(&chain, outcome);
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
        let rx = stream::spawn(
            self.balancer.journal().clone(),
            req.after_sequence,
            chain,
            req.replay_only,
        );
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
