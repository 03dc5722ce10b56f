//! The `invite-worker` binary: everything lives in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    invite_worker::cli::main().await
}
