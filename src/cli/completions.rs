//! `cxpipe completions SHELL`: prints the shell completion script for cxpipe on stdout
//! (clap_complete), e.g. `cxpipe completions bash > ~/.local/share/bash-completion/completions/cxpipe`.

use std::process::ExitCode;

use clap::CommandFactory as _;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish (also elvish, powershell).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, "cxpipe", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
