//! Compiles the inventory proto with a pure-Rust protobuf compiler (protox):
//! nothing to install by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["inventory/v1/stock.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(files)?;
    Ok(())
}
