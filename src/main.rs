//! The `cxpipe` binary: a thin shell over [`cxpipe::cli`].

fn main() -> std::process::ExitCode {
    cxpipe::cli::main()
}
