//! Compiles proto/ with tonic-prost-build. protoc comes from the
//! protoc-bin-vendored crate, so the machine needs no protoc of its own.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto = "proto/walletbalancer/v1/wallet_balancer.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("walletbalancer_descriptor.bin"))
        .compile_protos(&[proto], &["proto", &well_known.to_string_lossy()])?;
    Ok(())
}
