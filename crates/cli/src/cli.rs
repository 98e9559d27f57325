//! The command tree: clap definitions only. Each command's doc comment is its
//! `--help` text; the handlers live in [`crate::module`], [`crate::keys`],
//! [`crate::audit`], [`crate::bench`] (`bench module`), [`crate::loadbench`]
//! (`bench` with no subcommand, or `bench load`) and [`crate::verify`].
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use postvault_crypto::Faults;
use postvault_module::Role;
use postvault_module::keys::{KeyType, KeyUsage};

/// postvault: an online postage-metering platform.
///
/// `postvault module` runs ceremonies and operations on a cryptographic
/// module; `postvault audit` checks a module's audit log offline;
/// `postvault bench` measures performance; `postvault verify` checks a
/// postage label offline; `postvault serve` runs the postal server;
/// `postvault client` is a customer of it (meters, postage, labels) and
/// `postvault provider` its provider (signed authorizations, downloads and
/// refunds).
#[derive(Debug, Parser)]
#[command(name = "postvault", version, propagate_version = true)]
pub struct Cli {
    /// Say more: for module commands, print the audit entry (seq) each command produced, on stderr.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Operate a cryptographic module: serve it, initialize it, manage
    /// operators, master key sets and key tokens, export its audit log.
    ///
    /// Every command except `serve`, `selftest` and `audit-log` talks to one
    /// module: with --socket to a daemon started by `postvault module serve`,
    /// or with --dir by opening the module directory in this process (which
    /// fails while a daemon holds it). Each invocation opens a secure
    /// session, logs on as --as USER when given, runs, logs off and closes
    /// the session.
    #[command(subcommand)]
    Module(ModuleCommand),
    /// Check audit logs offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Measure performance, each figure next to a baseline measured in the
    /// same run (build with `cargo build --release -p postvault` first:
    /// a debug build measures the debug build).
    ///
    /// With no subcommand (or `load`): the load generator, `postvault bench
    /// [--url URL] [--clients N] [--seconds S]`; `postvault bench load
    /// --help` explains it. `postvault bench module` measures one module.
    Bench(BenchArgs),
    /// Verify a postage label offline: read its indicium, check the PSD
    /// certificate against the CA and the indicium's signature.
    ///
    /// IMAGE is a PNG or JPEG (the label as rendered, a scan or a photo);
    /// --hex and --bytes take the 113 indicium bytes directly. Prints VALID
    /// or NOT VALID (with the check that failed and what to do), then the
    /// indicium's fields. Exit 0 only when valid, 1 when not valid or
    /// unreadable, 2 on a usage error.
    Verify(VerifyArgs),
    /// Run the postal server: the HTTPS JSON API (sign-up, logon, sessions).
    ///
    /// HTTPS only (TLS 1.3 and 1.2). With no certificate configured, the
    /// first start makes a self-signed one in DATA/tls/ and every start
    /// prints its SHA-256 fingerprint for clients to pin. The first start on
    /// a fresh store also makes the operator account `operator` and writes
    /// its password to DATA/operator-credentials.txt (mode 0600). The API is
    /// described at https://ADDR/openapi.json. Stops on ctrl-c or SIGTERM.
    Serve(ServerArgs),
    /// The whole product once, end to end, with development credentials:
    /// an embedded server (module ceremony, CA, MeterGen, a development
    /// provider), a customer who signs up, registers a meter, buys $10.00
    /// and prints exactly one first-class indicium, which is then verified
    /// offline; every module's audit log is verified with its audit key.
    ///
    /// Leaves in --out: label.png, label.pdf (4x6 inch), indicium.bin (the
    /// 113 bytes), psd-cert.pem, ca-cert.pem, audit/MODULE.log and
    /// audit/MODULE-key.pem per module, and server/ (the server's data
    /// directory). Ends with `demo ok`.
    Demo(DemoArgs),
    /// A customer of a postal server: sign up, log on, register a meter,
    /// buy postage, print labels, see the history, get a refund.
    ///
    /// The client keeps its state in a directory (--state DIR, or
    /// POSTVAULT_CLIENT_DIR, default $HOME/.postvault/client; mode 0700,
    /// files 0600): client.json (server URL, pinned certificate
    /// fingerprint or CA file, login, session token) and
    /// meters/DEVICE_ID.json (each meter's HMAC key, sealed under the
    /// account password with Argon2id and AES-256-GCM). The account
    /// password is read from --password-file FILE, else the environment
    /// variable POSTVAULT_PASSWORD, else prompted on the terminal. Start
    /// with `postvault client signup`.
    #[command(subcommand)]
    Client(ClientCommand),
    /// The provider (the vendor's e-commerce side): make the provider key
    /// and the provider's account, authorize a customer's meter, download
    /// postage value, refund a meter.
    ///
    /// Each message is signed with the provider's ECDSA P-256 key, kept in
    /// a passphrase-protected key file (`provider keygen`), and sent to the
    /// server by a provider or operator account, which logs on and off for
    /// each command.
    #[command(subcommand)]
    Provider(ProviderCommand),
}

/// Options of `postvault demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo leaves its files (created; must be new or empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The store for the embedded server: sqlite://PATH or
    /// postgres://USER@HOST/DB (default: SQLite in OUT/server).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

/// Options of `postvault serve`; each one given overrides the --config file.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The data directory (created if missing): TLS certificate, operator
    /// credentials, the default SQLite database. Default: ./postvault-data.
    #[arg(long, env = "POSTVAULT_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Listen on this address (IP:PORT; port 0 picks a free port, printed
    /// at start). Default: 127.0.0.1:8443.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The store: sqlite://PATH or postgres://USER@HOST/DB (default
    /// sqlite://DATA/postvault.sqlite).
    #[arg(long, env = "POSTVAULT_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Use the module daemon on this Unix socket as a pool member (give it
    /// once per daemon; start each with `postvault module serve --dir D
    /// --socket S`). Fresh daemons are set up on first start. Default:
    /// modules in this process.
    #[arg(long = "module-socket", value_name = "PATH")]
    pub module_sockets: Vec<PathBuf>,
    /// A TOML configuration file: data, listen, store,
    /// session_idle_timeout_secs (900), failed_logon_limit (5),
    /// max_body_bytes (65536), tls_cert and tls_key, modules,
    /// async_workers (threads serving HTTPS; on SQLite one per CPU but
    /// one, on PostgreSQL one per CPU),
    /// print_queue (4096 print requests waiting, then 503),
    /// module_sockets, modules_dir, module_first, meter_stock,
    /// cross_check_threshold, provider_public_key (see the server crate's
    /// config documentation). Unknown keys are an error.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where the client keeps its state, and the account password.
#[derive(Debug, Clone, Args)]
pub struct ClientStateArgs {
    /// The client state directory (created with mode 0700).
    /// Default: $HOME/.postvault/client.
    #[arg(long, env = "POSTVAULT_CLIENT_DIR", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Read the account password from the first line of FILE (else
    /// POSTVAULT_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// The server and how to trust its certificate.
#[derive(Debug, Clone, Args)]
pub struct ServerTrustArgs {
    /// The server's URL, as `postvault serve` prints it (https://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Pin the server's certificate by its SHA-256 fingerprint (AA:BB:...,
    /// as `postvault serve` prints it).
    #[arg(long, value_name = "FP", conflicts_with = "cacert")]
    pub fingerprint: Option<String>,
    /// Verify the server's certificate against this CA certificate (PEM).
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<PathBuf>,
}

/// What to print: the piece's fields.
#[derive(Debug, Clone, Args)]
pub struct PieceArgs {
    /// The meter (device ID); may be left out when the account has exactly
    /// one meter in the state directory.
    #[arg(long, value_name = "DEVICE_ID")]
    pub meter: Option<String>,
    /// Postage in dollars, up to 3 decimals (e.g. 0.68).
    #[arg(long, value_name = "DOLLARS", allow_hyphen_values = true)]
    pub amount: String,
    /// Originating ZIP (10001 or 10001-0001); its ZIP5 must be the meter's
    /// licensing ZIP's.
    #[arg(long, value_name = "ZIP")]
    pub from_zip: String,
    /// Destination ZIP (10001 or 10001-0001); default: not addressed.
    #[arg(long, value_name = "ZIP")]
    pub to_zip: Option<String>,
    /// Date of mailing, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<String>,
    /// Where to write the label: a 4x6 inch PDF at this path, and a PNG
    /// beside it (same name, .png).
    #[arg(long, value_name = "FILE.pdf")]
    pub out: PathBuf,
}

/// `postvault client ...`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Make a customer account on a server and log on. Saves the server,
    /// its certificate fingerprint (or CA file) and the login in the state
    /// directory. The new password is read like every password (file,
    /// POSTVAULT_PASSWORD, or prompted twice).
    Signup {
        #[command(flatten)]
        state: ClientStateArgs,
        #[command(flatten)]
        server: ServerTrustArgs,
        /// The login to make (letters, digits, . _ @ -).
        #[arg(long, value_name = "LOGIN")]
        login: String,
    },
    /// Log on (a new session; sessions end after 15 idle minutes). With
    /// --url and --fingerprint/--cacert and --login, (re)configures the
    /// state directory for an existing account.
    Logon {
        #[command(flatten)]
        state: ClientStateArgs,
        #[command(flatten)]
        server: ServerTrustArgs,
        /// The account's login (default: the saved one).
        #[arg(long, value_name = "LOGIN")]
        login: Option<String>,
    },
    /// Log off: end the session on the server and forget its token.
    Logoff {
        #[command(flatten)]
        state: ClientStateArgs,
    },
    /// Get a meter and register it: reserve a certified meter, generate
    /// this client's HMAC key, seal it (with the user ID and the account
    /// password) to the deployment's registration key, and check the
    /// module's MAC over its answer (refusing loudly if it is wrong). The
    /// key is kept in meters/DEVICE_ID.json, sealed under the account
    /// password. Prints the device ID.
    Register {
        #[command(flatten)]
        state: ClientStateArgs,
        /// The licensing ZIP (10001 or 10001-0001): labels are printed
        /// from this ZIP5.
        #[arg(long, value_name = "ZIP")]
        zip: String,
        /// The PSD user ID (default: the login).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Buy postage: the server's provider downloads AMOUNT into the meter.
    Buy {
        #[command(flatten)]
        state: ClientStateArgs,
        /// The meter (default: the account's only one).
        #[arg(long, value_name = "DEVICE_ID")]
        meter: Option<String>,
        /// Dollars, up to 3 decimals (e.g. 50.00).
        #[arg(long, value_name = "DOLLARS", allow_hyphen_values = true)]
        amount: String,
    },
    /// Show a meter's registers and pieces (without --meter: every meter
    /// of the account).
    Status {
        #[command(flatten)]
        state: ClientStateArgs,
        /// The meter.
        #[arg(long, value_name = "DEVICE_ID")]
        meter: Option<String>,
    },
    /// Print one label: get the meter's challenge, send the MACed request,
    /// check the answer (its MAC, challenge, fields and signature with the
    /// meter's certificate), write the label (PDF at --out, PNG beside it)
    /// and print the piece number and registers.
    Print {
        #[command(flatten)]
        state: ClientStateArgs,
        #[command(flatten)]
        piece: PieceArgs,
        /// Mail class: first, priority, express, ground, media, library, or
        /// a category code (1 to 4 of A-Z, 0-9).
        #[arg(long, value_name = "CLASS", default_value = "first")]
        class: String,
    },
    /// Print a correction indicium (category CORR): additional postage for
    /// a piece already mailed. Same options and checks as `print`.
    Correct {
        #[command(flatten)]
        state: ClientStateArgs,
        #[command(flatten)]
        piece: PieceArgs,
    },
    /// Refund the meter's remaining postage and withdraw it (it cannot
    /// print afterwards). Checks the refund indicium's signature and, with
    /// --out, writes it as a label. Asks for --yes: a withdrawal cannot be
    /// undone.
    Refund {
        #[command(flatten)]
        state: ClientStateArgs,
        /// The meter (default: the account's only one).
        #[arg(long, value_name = "DEVICE_ID")]
        meter: Option<String>,
        /// Write the refund indicium's label here (PDF, and PNG beside it).
        #[arg(long, value_name = "FILE.pdf")]
        out: Option<PathBuf>,
        /// Confirm: the meter is withdrawn for good.
        #[arg(long)]
        yes: bool,
    },
    /// The meter's pieces (with their indicium hex) and money movements.
    History {
        #[command(flatten)]
        state: ClientStateArgs,
        /// The meter (default: the account's only one).
        #[arg(long, value_name = "DEVICE_ID")]
        meter: Option<String>,
    },
    /// Print one label per row of a CSV file (header
    /// `amount,from_zip,to_zip,class`; to_zip and class may be empty),
    /// writing DIR/NNNNNN.pdf and .png (NNNNNN: the row number). Every row
    /// is checked before anything is printed; printing stops at the first
    /// refusal, naming the row. A progress bar shows on stderr.
    Bulk {
        #[command(flatten)]
        state: ClientStateArgs,
        /// The meter (default: the account's only one).
        #[arg(long, value_name = "DEVICE_ID")]
        meter: Option<String>,
        /// The CSV file.
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
        /// The directory for the labels (created if missing).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Date of mailing for every piece, YYYY-MM-DD (default: today, UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
    },
}

/// The provider's connection: a provider or operator account on a server.
#[derive(Debug, Clone, Args)]
pub struct ProviderConnArgs {
    #[command(flatten)]
    pub server: ServerTrustArgs,
    /// The provider (or operator) account's login.
    #[arg(long, value_name = "LOGIN")]
    pub login: String,
    /// Read the account password from the first line of FILE (else
    /// POSTVAULT_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The provider key file (from `postvault provider keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Read the key file's passphrase from the first line of FILE (else
    /// POSTVAULT_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// The role of an account an operator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StaffRole {
    /// Sends signed provider messages.
    Provider,
    /// Runs the server: makes accounts, and may also send provider messages.
    Operator,
}

impl StaffRole {
    /// The role as the server names it.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Provider => "provider",
            StaffRole::Operator => "operator",
        }
    }
}

/// `postvault provider ...`.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Make a provider key (ECDSA P-256) and write it to a new key file
    /// (mode 0600, sealed under a passphrase with Argon2id and
    /// AES-256-GCM; an existing file is never overwritten). Prints the
    /// public key (PEM), which goes into the modules' crypto card.
    Keygen {
        /// The key file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Read the passphrase from the first line of FILE (else
        /// POSTVAULT_PASSPHRASE, else prompted twice).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Also write the public key (PEM) to this file.
        #[arg(long, value_name = "FILE")]
        public_out: Option<PathBuf>,
    },
    /// Authorize Customer: set a registered meter's licensing ZIP and
    /// maximum descending register (Assigned -> Leased).
    Authorize {
        #[command(flatten)]
        conn: ProviderConnArgs,
        /// The meter.
        #[arg(long, value_name = "DEVICE_ID")]
        meter: String,
        /// The licensing ZIP (10001 or 10001-0001).
        #[arg(long, value_name = "ZIP")]
        zip: String,
        /// The most postage the meter may hold, dollars.
        #[arg(
            long,
            value_name = "DOLLARS",
            default_value = "500.00",
            allow_hyphen_values = true
        )]
        max: String,
    },
    /// Download Postage Value: add AMOUNT to the meter's descending register.
    Download {
        #[command(flatten)]
        conn: ProviderConnArgs,
        /// The meter.
        #[arg(long, value_name = "DEVICE_ID")]
        meter: String,
        /// Dollars, up to 3 decimals.
        #[arg(long, value_name = "DOLLARS", allow_hyphen_values = true)]
        amount: String,
    },
    /// An operator makes the provider's account (or another operator's) on
    /// the server.
    ///
    /// The provider then logs on with its own account for the message
    /// commands, instead of an operator's. Logs on with an operator account
    /// (--login, its password from --password-file, else
    /// POSTVAULT_PASSWORD, else a prompt); the new account's password comes
    /// from --new-password-file, else it is prompted for twice.
    AddAccount {
        #[command(flatten)]
        server: ServerTrustArgs,
        /// The operator account to log on with.
        #[arg(long, value_name = "LOGIN")]
        login: String,
        /// Read the operator's password from the first line of FILE.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// The new account's login (3 to 64 of A-Z a-z 0-9 . _ @ -).
        #[arg(long, value_name = "LOGIN")]
        new_login: String,
        /// Read the new account's password (at least 12 characters) from
        /// the first line of FILE.
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// The new account's role.
        #[arg(long, value_enum, default_value_t = StaffRole::Provider)]
        role: StaffRole,
    },
    /// Refund: the module makes a refund indicium for the whole remaining
    /// descending register and withdraws the meter.
    Refund {
        #[command(flatten)]
        conn: ProviderConnArgs,
        /// The meter.
        #[arg(long, value_name = "DEVICE_ID")]
        meter: String,
        /// Date of the refund indicium, YYYY-MM-DD (default: today, UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
    },
}

/// Which module to talk to.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Talk to the module daemon listening on this Unix socket (`postvault module serve`).
    #[arg(long, env = "POSTVAULT_MODULE_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Open the module in this process from its directory (takes the module's
    /// exclusive lock, so it fails while a daemon serves that directory). The
    /// module restarts at every invocation, which ends the Administrative,
    /// Exporting Shares and Importing Shares states: use a daemon for those.
    #[arg(long, env = "POSTVAULT_MODULE_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Seal provider for the module's NVM, with --dir only: `file:PATH` or
    /// `pkcs11:token=LABEL,pin-file=PATH[,key=LABEL][,module=PATH]`.
    /// Default: file:DIR/seal.key (development key file, created on first use).
    #[arg(long, value_name = "SPEC")]
    pub seal: Option<String>,
}

/// The operator to log on as (required).
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// Log on as this operator.
    #[arg(long = "as", value_name = "USER")]
    pub as_user: String,
    /// Read the password from the first line of FILE (for scripts); without
    /// it the password is prompted for on the terminal.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// The operator to log on as (optional).
#[derive(Debug, Clone, Args)]
pub struct OptOperatorArgs {
    /// Log on as this operator first.
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// Read the password from the first line of FILE (for scripts); without
    /// it the password is prompted for on the terminal.
    #[arg(long, value_name = "FILE", requires = "as_user")]
    pub password_file: Option<PathBuf>,
}

impl OptOperatorArgs {
    /// As required operator arguments, when --as was given.
    pub fn get(&self) -> Option<OperatorArgs> {
        self.as_user.as_ref().map(|u| OperatorArgs {
            as_user: u.clone(),
            password_file: self.password_file.clone(),
        })
    }
}

/// `postvault module ...`.
#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Run a module as a daemon on a Unix socket, until killed.
    ///
    /// Prints `module <id> state <state> serving on <socket>` once ready.
    /// Audit entries are appended to DIR/audit.log.
    Serve(ServeArgs),
    /// Show the module's status: ID, states, keys, clock, audit position, self-tests.
    Status {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OptOperatorArgs,
        /// Print the status as one line of JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the power-up self-tests and print one line per algorithm.
    ///
    /// Without --socket/--dir the tests run in this process; with them, the
    /// module runs its own self-tests (RunSelfTests). Exits 1 if any failed.
    Selftest {
        #[command(flatten)]
        conn: ConnArgs,
        /// Make these tests fail on purpose (comma-separated names, in-process only).
        #[arg(long, value_name = "NAME,...", value_parser = parse_faults)]
        fail: Option<Faults>,
    },
    /// Initialize a new module as the master (generates the first MKS) or as
    /// a clone (generates a transport key, to receive MKS shares).
    ///
    /// Runs Start Initialization and Initialize Access Control with one
    /// Administrator, one Security Officer and two or more Key Custodians,
    /// then logs on as the Security Officer to generate the MKS or the
    /// transport key. Each user is `ID=PWFILE` (password from the file's first
    /// line) or `ID` (password prompted twice on the terminal).
    Init(InitArgs),
    /// Enter (begin) or leave (end) Administrative state, where operator
    /// accounts and the clock are managed. Security Officer.
    Admin {
        /// begin: Operational -> Administrative; end: back to Operational.
        action: AdminAction,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Manage operator accounts (Administrator, in Administrative state).
    #[command(subcommand)]
    User(UserCommand),
    /// Check an operator's credentials: log on, print the role, log off.
    Logon {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Log on and print the module's idea of the current user and role.
    Whoami {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Change your own password (the old one is the logon password).
    Passwd {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// Read the new password from FILE's first line (else prompted twice).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Set the module clock (Administrator, in Administrative state).
    Clock {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// The new module time, Unix seconds.
        #[arg(long, value_name = "UNIX")]
        time: i64,
    },
    /// Master Key Set ceremonies: generation, share export and import, rollover.
    #[command(subcommand)]
    Mks(MksCommand),
    /// Create and check key tokens (keys sealed under the active MKS). Security Officer.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Initialize the crypto-card keys (registration signing and decryption keys).
    ///
    /// --generate creates them (first module of a deployment) and writes to
    /// --out-dir: registration-signing.token.json,
    /// registration-decryption.token.json, registration-signing.pub.pem and
    /// registration-encryption.pub (hex). --load-dir loads the two token files
    /// written by another module under the same MKS. Security Officer.
    CryptoCard(CryptoCardArgs),
    /// Export the audit verification key as PEM (Auditor).
    AuditKey {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// Where to write the PEM public key.
        #[arg(long, value_name = "FILE.pem")]
        out: PathBuf,
    },
    /// Copy a module's audit log (DIR/audit.log) to a file.
    ///
    /// Works while a daemon serves the directory: the log is append-only and
    /// no module lock is taken. A partly written last line is left out.
    AuditLog {
        /// The module directory.
        #[arg(long, env = "POSTVAULT_MODULE_DIR", value_name = "DIR")]
        dir: PathBuf,
        /// Where to write the copy.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write an audit entry for a host event (no logon needed).
    AuditEntry {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OptOperatorArgs,
        /// What happened (free text, no secrets, at most 1024 bytes).
        #[arg(long, value_name = "TEXT")]
        note: String,
        /// Sign this entry (pins down every entry before it).
        #[arg(long)]
        sign: bool,
    },
    /// Destroy every key in the module; it is unusable until reset. Security Officer.
    Zeroize {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// Confirm: this destroys all keys in the module.
        #[arg(long)]
        yes: bool,
    },
    /// Erase everything and return the module to Uninitialized.
    ///
    /// Security Officer; anyone when the module is in Error state.
    Reset {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OptOperatorArgs,
        /// Confirm: this destroys all keys in the module.
        #[arg(long)]
        yes: bool,
    },
}

/// `postvault module serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The module directory (NVM, lock, audit log); created if missing.
    #[arg(long, env = "POSTVAULT_MODULE_DIR", value_name = "DIR")]
    pub dir: PathBuf,
    /// The Unix socket to listen on (mode 0600).
    #[arg(long, env = "POSTVAULT_MODULE_SOCKET", value_name = "PATH")]
    pub socket: PathBuf,
    /// Seal provider for the NVM: `file:PATH` or `pkcs11:...`. Default: file:DIR/seal.key.
    #[arg(long, value_name = "SPEC")]
    pub seal: Option<String>,
    /// Sign at least every N audit entries (default 100).
    #[arg(long, value_name = "N")]
    pub sign_every: Option<u32>,
    /// Make these power-up self-tests fail on purpose (testing the Error state).
    #[arg(long, value_name = "NAME,...", value_parser = parse_faults)]
    pub fail_selftest: Option<Faults>,
}

/// `postvault module init`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["master", "clone"])))]
pub struct InitArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Initialize as the master module: generate the first MKS.
    #[arg(long)]
    pub master: bool,
    /// Initialize as a clone: generate a transport key to receive MKS shares.
    #[arg(long)]
    pub clone: bool,
    /// The Administrator.
    #[arg(long, value_name = "ID[=PWFILE]", value_parser = parse_user_spec)]
    pub admin: UserSpec,
    /// The Security Officer.
    #[arg(long, value_name = "ID[=PWFILE]", value_parser = parse_user_spec)]
    pub so: UserSpec,
    /// A Key Custodian (give at least two).
    #[arg(long, value_name = "ID[=PWFILE]", value_parser = parse_user_spec, required = true)]
    pub kc: Vec<UserSpec>,
    /// Module time to set, Unix seconds (default: now).
    #[arg(long, value_name = "UNIX")]
    pub time: Option<i64>,
    /// With --clone: also write the transport public key (hex) to FILE.
    #[arg(long, value_name = "FILE", requires = "clone")]
    pub transport_key_out: Option<PathBuf>,
}

/// An account named on the command line: `ID` or `ID=PWFILE`.
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// User ID.
    pub id: String,
    /// Password file, if given.
    pub password_file: Option<PathBuf>,
}

fn parse_user_spec(s: &str) -> Result<UserSpec, String> {
    let (id, file) = match s.split_once('=') {
        Some((id, f)) if !f.is_empty() => (id, Some(PathBuf::from(f))),
        Some(_) => return Err("nothing after '=': give ID=PWFILE or just ID".into()),
        None => (s, None),
    };
    if id.is_empty() {
        return Err("the user ID is empty".into());
    }
    Ok(UserSpec {
        id: id.to_string(),
        password_file: file,
    })
}

fn parse_faults(s: &str) -> Result<Faults, String> {
    Faults::parse(s).map_err(|e| {
        let known: Vec<&str> = postvault_crypto::TestName::ALL
            .iter()
            .map(|t| t.as_str())
            .collect();
        format!("{e}; known names: {}", known.join(", "))
    })
}

fn parse_role(s: &str) -> Result<Role, String> {
    match Role::parse(s) {
        Some(Role::NoRole) | None => Err(format!(
            "unknown role {s:?}; use one of so, kc, admin, au, pr, ca, cu, cad (or the full names, e.g. security-officer)"
        )),
        Some(r) => Ok(r),
    }
}

/// `module admin begin|end`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AdminAction {
    /// Operational -> Administrative.
    Begin,
    /// Administrative -> Operational.
    End,
}

/// Account settings; unset ones take defaults (create) or stay (modify).
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// Consecutive failed logons before the account locks (default 5).
    #[arg(long, value_name = "N")]
    pub failure_limit: Option<u32>,
    /// Idle seconds before a logged-on user is logged off (default 900).
    #[arg(long, value_name = "SECS")]
    pub logon_timeout: Option<u32>,
    /// Account expiry, Unix seconds (default never; 0 on modify clears it).
    #[arg(long, value_name = "UNIX")]
    pub expires: Option<i64>,
    /// Seconds a new password stays valid (default 90 days).
    #[arg(long, value_name = "SECS")]
    pub password_period: Option<u32>,
}

/// `postvault module user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an operator account.
    Create {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// The new user's ID (letters, digits, '.', '_', '-', '@'; up to 64).
        #[arg(long, value_name = "ID")]
        user: String,
        /// Role: so, kc, admin, au, pr, ca, cu, cad (or full names).
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: Role,
        /// Read the initial password from FILE's first line (else prompted twice).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Delete an operator account.
    Delete {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// The user to delete.
        #[arg(long, value_name = "ID")]
        user: String,
    },
    /// Change an account's settings, set a new password, or unlock it.
    Modify {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// The user to modify.
        #[arg(long, value_name = "ID")]
        user: String,
        #[command(flatten)]
        settings: SettingsArgs,
        /// Set a new password read from FILE's first line (the user should change it).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// Clear the failed-logon count (unlocks a locked account).
        #[arg(long)]
        unlock: bool,
    },
    /// List accounts (never password hashes). Administrator, Auditor or
    /// Security Officer, in Administrative state.
    List {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `postvault module mks ...`.
#[derive(Debug, Subcommand)]
pub enum MksCommand {
    /// Generate a new MKS (in Operational: the next generation, dormant). Security Officer.
    Generate {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Write this (clone) module's transport public key to a file, as hex.
    /// Key Custodian or Security Officer.
    TransportKey {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// Where to write the key (64 hex digits and a newline).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Split an MKS into shares (Operational -> Exporting Shares). Security Officer.
    CreateShares {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// Number of shares, one per key custodian.
        #[arg(long, value_name = "N")]
        count: u8,
        /// Shares needed to recombine the MKS.
        #[arg(long, value_name = "T")]
        threshold: u8,
        /// Share the dormant MKS instead of the active one.
        #[arg(long)]
        dormant: bool,
    },
    /// Export the next share, encrypted to the destination's transport key. Key Custodian.
    ExportShare {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// The destination module's transport public key file (hex).
        #[arg(long, value_name = "FILE")]
        transport_key: PathBuf,
        /// Where to write the encrypted share (JSON; must not exist yet).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The destination may not export this MKS in turn.
        #[arg(long)]
        retained: bool,
    },
    /// Abandon a share export (Exporting Shares -> Operational). Security Officer.
    AbortExport {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Start importing shares of a replacement MKS (Operational -> Importing Shares). Security Officer.
    StartImport {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Enter one encrypted share. Key Custodian.
    ImportShare {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// The share file written by `mks export-share`.
        #[arg(long, value_name = "FILE")]
        share: PathBuf,
    },
    /// Combine the imported shares into the MKS. Security Officer.
    Combine {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Make the newer (dormant) MKS active; the old one becomes dormant. Security Officer.
    Activate {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Delete the dormant MKS (after every token was translated). Security Officer.
    DeleteDormant {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Re-seal a token from the previous (dormant) MKS under the active one. Security Officer.
    Translate {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// The token under the previous MKS.
        #[arg(long, value_name = "FILE")]
        token: PathBuf,
        /// Where to write the translated token (must not exist yet).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Key types on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyTypeArg {
    /// AES-256.
    Aes256,
    /// HMAC-SHA-256.
    Hmac,
    /// ECDSA P-256.
    EcdsaP256,
    /// HPKE X25519.
    HpkeX25519,
}

impl From<KeyTypeArg> for KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::Aes256 => KeyType::Aes256,
            KeyTypeArg::Hmac => KeyType::HmacSha256,
            KeyTypeArg::EcdsaP256 => KeyType::EcdsaP256,
            KeyTypeArg::HpkeX25519 => KeyType::HpkeX25519,
        }
    }
}

/// Key usages on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyUsageArg {
    /// Anything else (tests, demonstrations).
    General,
    /// Registration signing key.
    RegistrationSigning,
    /// Registration decryption key.
    RegistrationDecryption,
    /// A PSD's indicium signing key.
    IndiciumSigning,
    /// A PSD's key-encrypting key.
    KeyEncrypting,
}

impl From<KeyUsageArg> for KeyUsage {
    fn from(k: KeyUsageArg) -> Self {
        match k {
            KeyUsageArg::General => KeyUsage::General,
            KeyUsageArg::RegistrationSigning => KeyUsage::RegistrationSigning,
            KeyUsageArg::RegistrationDecryption => KeyUsage::RegistrationDecryption,
            KeyUsageArg::IndiciumSigning => KeyUsage::IndiciumSigning,
            KeyUsageArg::KeyEncrypting => KeyUsage::KeyEncrypting,
        }
    }
}

/// `postvault module token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Generate a key inside the module and write it as a key token; prints its check value.
    Create {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// Kind of key.
        #[arg(long = "type", value_name = "TYPE")]
        key_type: KeyTypeArg,
        /// What the key is for.
        #[arg(long, value_name = "USAGE", default_value = "general")]
        usage: KeyUsageArg,
        /// Identity of the record the token belongs to (bound into the token).
        #[arg(long, value_name = "ID")]
        identity: String,
        /// The key may not be exported to another module.
        #[arg(long)]
        retained: bool,
        /// Expiry, Unix seconds.
        #[arg(long, value_name = "UNIX")]
        expires: Option<i64>,
        /// Where to write the token (JSON; must not exist yet).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Open a token in the module and print its header and key check value (never the key).
    Check {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        op: OperatorArgs,
        /// The token file.
        #[arg(long, value_name = "FILE")]
        token: PathBuf,
    },
}

/// `postvault module crypto-card`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["generate", "load_dir"])))]
pub struct CryptoCardArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub op: OperatorArgs,
    /// Generate new registration keys (needs --out-dir).
    #[arg(long, requires = "out_dir")]
    pub generate: bool,
    /// With --generate: where to write the tokens and public keys.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Load the registration key tokens from this directory.
    #[arg(long, value_name = "DIR")]
    pub load_dir: Option<PathBuf>,
    /// CA certificate (DER or PEM) that PSD certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The provider's ECDSA P-256 public key (PEM).
    #[arg(long, value_name = "FILE.pem")]
    pub provider_key: Option<PathBuf>,
}

/// `postvault verify`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["image", "hex", "bytes"])))]
pub struct VerifyArgs {
    /// The label image: PNG or JPEG (a rendered label, a scan or a photo).
    #[arg(value_name = "IMAGE")]
    pub image: Option<PathBuf>,
    /// The indicium as hex (226 digits; spaces allowed) instead of an image.
    #[arg(long, value_name = "HEX")]
    pub hex: Option<String>,
    /// A file holding the raw 113 indicium bytes instead of an image.
    #[arg(long, value_name = "FILE")]
    pub bytes: Option<PathBuf>,
    /// The postvault CA certificate (PEM or DER): the trust anchor.
    #[arg(long, value_name = "CA.pem")]
    pub ca: PathBuf,
    /// The PSD's certificate (PEM or DER). Without it, give the postal
    /// server (--url with --fingerprint or --cacert): the certificate of
    /// the indicium's device is fetched from it (GET
    /// /v1/certificates/DEVICE) and checked against --ca like a local one.
    #[arg(long, value_name = "PSD.pem")]
    pub cert: Option<PathBuf>,
    /// Where to fetch the PSD certificate from when --cert is not given.
    #[command(flatten)]
    pub server: ServerTrustArgs,
    /// Check the certificates' validity at this time (Unix seconds) instead
    /// of now.
    #[arg(long, value_name = "UNIX")]
    pub at: Option<i64>,
}

/// `postvault audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit log: sequence, hash chain, module ID, every signature
    /// and key rotation. Exits 0 when it verifies, 1 otherwise (naming the
    /// first bad entry).
    Verify {
        /// The log file (JSON lines, e.g. from `postvault module audit-log`).
        #[arg(long, value_name = "FILE")]
        log: PathBuf,
        /// The module's audit verification key (PEM, from `postvault module audit-key`).
        #[arg(long, value_name = "FILE.pem")]
        key: PathBuf,
    },
}

/// `postvault bench [LOAD OPTIONS]` or `postvault bench SUBCOMMAND`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchSubcommand>,
    /// With no subcommand: the load generator's options (as for `load`).
    #[command(flatten)]
    pub load: BenchLoadArgs,
}

/// The subcommands of `postvault bench`.
#[derive(Debug, Subcommand)]
pub enum BenchSubcommand {
    #[command(flatten)]
    Other(BenchCommand),
    /// Indicia per second of a postal server under load: N concurrent
    /// HTTPS clients printing real, MAC'd pieces, against the raw ECDSA
    /// P-256 signing rate of all cores (also what `postvault bench` with no
    /// subcommand runs).
    ///
    /// Without --url it starts its own server in this process (a new
    /// temporary data directory under $TMPDIR with SQLite, 127.0.0.1 on a
    /// free port, the development provider key) and deletes it afterwards;
    /// with --url (and --fingerprint or --cacert) it loads that server,
    /// signing up a fresh random account unless --login (and
    /// --password-file or POSTVAULT_PASSWORD) names an existing one. The
    /// server must hold a provider key (purchases are signed by it).
    ///
    /// Set-up, not timed: logon, then one meter per client reserved,
    /// registered (the Configure PSD MAC and the certificate chain checked)
    /// and bought up to $500.00. Then each client, on its own connection,
    /// loops for --seconds: builds and MACs a print request on its meter's
    /// challenge chain, POSTs it, checks the answer's MAC, old challenge and
    /// registers (and the indicium's fields and signature on the first
    /// piece and one in 64), and records the latency; it buys more postage
    /// when the meter runs low. Any refused or failing piece stops the
    /// bench: the figures so far and the server's message are printed and
    /// it exits 1.
    ///
    /// Afterwards (the embedded server stopped first) it signs 49-byte
    /// messages on one thread per available core with aws-lc-rs for
    /// --sign-seconds and sums the rates. Prints `load: X indicia/s ...`
    /// with the count, errors and p50/p99 latency; for the embedded server
    /// `server: N print batches of P pieces on average ...` with what a
    /// batch took to lock and read its meters, in the module and to commit
    /// (where the print path's time went during the load); `ecdsa p-256
    /// sign (aws-lc-rs, T threads): Y/s`; and last `ratio=R` with R = X / Y.
    Load(BenchLoadArgs),
}

/// The load generator's options (`postvault bench` and `postvault bench load`).
#[derive(Debug, Clone, Args)]
pub struct BenchLoadArgs {
    /// Load this server instead of an embedded one (with --fingerprint or
    /// --cacert).
    #[command(flatten)]
    pub server: ServerTrustArgs,
    /// With --url: an existing customer account to use (its password from
    /// --password-file, else POSTVAULT_PASSWORD, else a prompt). Default:
    /// sign up a fresh account with a random login and password.
    #[arg(long, value_name = "LOGIN", requires = "url")]
    pub login: Option<String>,
    /// With --login: read its password from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "login")]
    pub password_file: Option<PathBuf>,
    /// Concurrent clients, each with its own connection and meter. The
    /// default, 256, keeps a two-core server busy and its batches full
    /// (up to 256 pieces, about half the clients: the other half is being
    /// answered meanwhile), so each fsync is spread over many pieces; with
    /// fewer, the clients spend the time waiting for the batch their pieces
    /// are in. Set-up registers one meter per client (about 10 s for 256).
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: u32,
    /// Seconds of load (set-up not counted).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Seconds of the all-core signing baseline (default: 5, or --seconds
    /// when that is shorter).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub sign_seconds: Option<f64>,
    /// Postage of each piece, in mills (1 to 99999); small, so a $500.00
    /// meter lasts.
    #[arg(long, value_name = "MILLS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=99_999))]
    pub postage: u64,
}

/// `postvault bench module`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Indicia per second of one in-process module on one thread, against
    /// the raw ECDSA P-256 signing rate of the same crypto library.
    ///
    /// Sets up a master module in a new temporary directory under $TMPDIR
    /// (default /tmp; the module fsyncs its NVM once per batch, so put
    /// TMPDIR on the disk you mean to measure) with a file seal key, a
    /// crypto card holding a CA certificate and a provider key, and
    /// --meters meters, each leased and funded to $500.00 (a progress bar
    /// shows the set-up on a terminal). Then, for --seconds spent inside
    /// the module, sends Create Indicia batches of MAC'd requests through
    /// the secure session, following each meter's challenge chain and the
    /// module's checkpoint; building requests, checking every answer's MAC
    /// and registers (and one signature in 16) and refilling meters happen
    /// with the clock stopped. Any refused piece stops the bench (exit 1).
    /// Then it signs 49-byte messages (an indicium payload) with one key for
    /// as long.
    ///
    /// Prints the set-up, `module: X indicia/s (batch B, M meters)`,
    /// `ecdsa p-256 sign (aws-lc-rs, 1 thread): Y/s`, each with its cost per
    /// item in microseconds, and last `ratio=R` with R = X / Y. The module
    /// directory is deleted afterwards.
    Module(BenchModuleArgs),
}

/// `postvault bench module`.
#[derive(Debug, Args)]
pub struct BenchModuleArgs {
    /// Seconds to measure each side for (time inside the module calls, then
    /// signing time).
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Meters to set up.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub meters: u32,
    /// Pieces per Create Indicia batch, each from another meter (default:
    /// one per meter, at most 1024, the module's limit).
    #[arg(long, value_name = "B", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: Option<u32>,
    /// Postage of each piece, in mills (1 to 99999).
    #[arg(long, value_name = "MILLS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=99_999))]
    pub postage: u64,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.01..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds from 0.01 to 3600 (e.g. 10 or 0.5)"
        )),
    }
}
