//! Compiles the cluster's gRPC API from `proto/`. Uses `$PROTOC` when set,
//! otherwise the protoc binary vendored by `protoc-bin-vendored`, so no
//! system package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/cluster.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
