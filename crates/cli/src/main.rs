//! The postvault command line: `postvault module ...` drives a cryptographic
//! module (ceremonies, operators, keys, audit export) in-process or through a
//! module daemon; `postvault audit ...` checks audit logs offline;
//! `postvault bench ...` measures performance (with no subcommand, a
//! load generator against a postal server); `postvault verify ...` checks a
//! postage label offline; `postvault serve` runs the postal server;
//! `postvault client ...` and `postvault provider ...` are its customer
//! and provider.
//!
//! Exit codes: 0 success, 1 failure (the module refused or failed, a file
//! could not be read or written, a check failed), 2 usage error.
#![forbid(unsafe_code)]

mod audit;
mod bench;
mod cli;
mod client;
mod conn;
mod demo;
mod keys;
mod loadbench;
mod module;
mod output;
mod provider;
mod secrets;
mod serve;
mod verify;

use std::process::ExitCode;

use clap::Parser;
use postvault_module::{ClientError, ModuleError, ModuleState, Role};

use crate::cli::{BenchSubcommand, Cli, Command};

/// mimalloc rather than the system allocator: the print path allocates many
/// small, short-lived buffers per piece (BENCHMARKS.md measures the gain).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (Linux).
///
/// mimalloc asks the kernel for huge pages (`MADV_HUGEPAGE`) and gives
/// freed memory back to it, so a busy server kept faulting in fresh 2 MiB
/// pages, each zeroed by the kernel: about 9 % of `postvault bench`'s CPU in
/// the load phase, and its p99 latency went from about 40 ms to 25 ms with
/// them off (BENCHMARKS.md, 2026-12-05 third session). The same advice as
/// for other latency-bound servers (Redis, PostgreSQL). A kernel without
/// `PR_SET_THP_DISABLE` (before 3.15) keeps its default: the call's error
/// changes nothing else, so it is ignored.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// A usage error found after parsing (e.g. neither --socket nor --dir): exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`].
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::UsageError(format!($($arg)*))))
    };
}

/// Like `print!`, but a closed stdout (`postvault ... | head`) is not a panic:
/// output stops and the command still finishes and exits with its own code.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::emit(format_args!($($arg)*))
    };
}

/// Like `println!`, with the behaviour of [`out!`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::emit(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to stdout; write errors other than a closed pipe are reported once on stderr.
pub fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    static FAILED: AtomicBool = AtomicBool::new(false);
    if FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        FAILED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write to stdout: {e}");
        }
    }
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Module(cmd) => module::run(cmd, cli.verbose > 0),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Bench(args) => match args.command {
            Some(BenchSubcommand::Other(cmd)) => bench::run(cmd),
            Some(BenchSubcommand::Load(a)) => loadbench::run(&a),
            None => loadbench::run(&args.load),
        },
        Command::Verify(args) => verify::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Client(cmd) => client::run(cmd),
        Command::Provider(cmd) => provider::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Prints an error (and, for module refusals, what to do next) and picks the exit code.
fn report(e: &anyhow::Error) -> ExitCode {
    // Sources whose text their wrapper already quotes are not repeated.
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    eprintln!("error: {message}");
    if e.downcast_ref::<UsageError>().is_some() {
        eprintln!("For more information, try '--help'.");
        return ExitCode::from(2);
    }
    let module_error = e.chain().find_map(|c| {
        c.downcast_ref::<ModuleError>()
            .or_else(|| match c.downcast_ref::<ClientError>() {
                Some(ClientError::Module(m)) => Some(m),
                _ => None,
            })
    });
    if let Some(hint) = module_error.and_then(hint) {
        eprintln!("hint: {hint}");
    }
    ExitCode::FAILURE
}

/// What an operator can do about a module refusal.
fn hint(e: &ModuleError) -> Option<String> {
    use ModuleState as S;
    let ModuleError::Denied {
        command,
        state,
        role,
    } = e
    else {
        return None;
    };
    let admin_commands = [
        "CreateUser",
        "DeleteUser",
        "ModifyUser",
        "ViewUsers",
        "SetClock",
    ];
    Some(match state {
        S::Uninitialized => {
            "the module is not initialized: run `postvault module init` first".into()
        }
        S::Operational if command == "ExportShare" || command == "AbortExport" => {
            "no share export is in progress: the Security Officer starts one with `postvault module mks create-shares`".into()
        }
        S::Operational if command == "ImportShare" || command == "CombineShares" => {
            "no share import is in progress: the Security Officer starts one with `postvault module mks start-import`".into()
        }
        S::Operational if admin_commands.contains(&command.as_str()) => format!(
            "{command} runs in Administrative state: the Security Officer runs `postvault module admin begin` first"
        ),
        S::Administrative if !admin_commands.contains(&command.as_str()) => {
            "the module is in Administrative state: the Security Officer ends it with `postvault module admin end`".into()
        }
        S::ExportingShares => "a share export is in progress: each key custodian runs `postvault module mks export-share`, or the Security Officer runs `postvault module mks abort-export`".into(),
        S::ImportingShares => "a share import is in progress: key custodians run `postvault module mks import-share`, then the Security Officer runs `postvault module mks combine`".into(),
        _ if *role == Role::NoRole => format!(
            "{command} needs a logged-on operator: add --as USER (and --password-file FILE)"
        ),
        _ => format!(
            "log on (--as USER) as an operator whose role may run {command} in state {state}; `postvault module status` shows the state"
        ),
    })
}
