//! `looptel-slo`: SLO spec → Prometheus rules and promtool tests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// SLO specs to Prometheus rules whose behaviour promtool can prove.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the rule file (and, with --tests, the promtool test file).
    Generate {
        /// The SLO spec (YAML).
        spec: PathBuf,
        /// The directory to write into (created when missing).
        #[arg(long)]
        out: PathBuf,
        /// Also write `rules.test.yaml` for `promtool test rules`.
        #[arg(long)]
        tests: bool,
    },
    /// Validates a spec: every problem, each naming its field.
    Check {
        /// The SLO spec (YAML).
        spec: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("looptel-slo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), looptel_slo::Error> {
    match cli.command {
        Command::Check { spec } => {
            let s = looptel_slo::read_spec(&spec)?;
            println!("{}: {} SLOs, valid", spec.display(), s.slos.len());
            Ok(())
        }
        Command::Generate { spec, out, tests } => {
            let s = looptel_slo::read_spec(&spec)?;
            let io = |path: &std::path::Path| {
                let path = path.display().to_string();
                move |source| looptel_slo::Error::Io { path, source }
            };
            std::fs::create_dir_all(&out).map_err(io(&out))?;
            for (name, contents) in looptel_slo::generate(&s, tests)? {
                let path = out.join(name);
                std::fs::write(&path, contents).map_err(io(&path))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}
