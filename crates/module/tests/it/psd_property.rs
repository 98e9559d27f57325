//! The money property (issue 3, item 7): random sequences of value
//! downloads, indicia, correction indicia, refunds, replayed and altered
//! requests and user changes, over several meters of one module, with the
//! test keeping the database (each meter's sealed package and the module's
//! checkpoint) and a model of every meter's registers. After every step:
//! AR + DR equals the control total (the sum of the downloads), AR never
//! decreases, DR never goes negative, the registers the module reports equal
//! the model's, and every refusal left the stored package byte for byte as
//! it was, the module's NVM (but for the refusal's audit entry) unchanged,
//! and the old package still working.
use proptest::prelude::*;

use postvault_indicium::{Indicium, MailCategory};
use postvault_module::checkpoint::SignedCheckpoint;
use postvault_module::error::ModuleError;
use postvault_module::psd::{
    self, CustomerSecrets, DeviceId, IndiciumRequest, Privileges, ProviderBody, ProviderCommand,
    ProviderMessage, PsdState, PsdStatus, PsdUserSettings, SealedPackage, UserAnswer,
    UserOperation, UserRequest,
};
use postvault_module::{Request, Response, Role};
use zeroize::Zeroizing;

use crate::common::*;
use crate::psd_indicium::{DATE, DESTINATION};
use crate::psd_lifecycle::{HMAC_KEY, Meter, PASSWORD, USER, ZIP, make_psd_cert, rng};

/// Meters per module in each case.
const METERS: usize = 3;
/// The clerk's key (a second user added by the administrator).
const CLERK_KEY: [u8; 32] = [0x3c; 32];
const CLERK: &str = "clerk";

/// The test's view of one meter: the database row and the model.
struct MeterState {
    device: DeviceId,
    package: SealedPackage,
    challenge: [u8; 16],
    sequence: u64,
    ascending: u64,
    descending: u64,
    control_total: u64,
    withdrawn: bool,
    clerk: bool,
    /// The last request that was issued (to replay or alter).
    last_request: Option<IndiciumRequest>,
}

/// One module with several leased meters, and the database's checkpoint.
struct Deployment {
    m: Meter,
    meters: Vec<MeterState>,
}

impl Deployment {
    fn new() -> Self {
        let m = Meter::new();
        let mut d = Self {
            m,
            meters: Vec::new(),
        };
        for i in 0..METERS {
            let device = DeviceId {
                vendor: 42,
                model: 1,
                serial: 100 + i as u32,
            };
            d.add_meter(device);
        }
        d
    }

    fn checkpoint(&self) -> Option<SignedCheckpoint> {
        self.m.checkpoint.clone()
    }

    /// Initialize, authorize, configure and lease one more meter.
    fn add_meter(&mut self, device: DeviceId) {
        let (mut package, public_key) = match ok(&mut self.m.c, Request::InitializePsd { device }) {
            Response::PsdInitialized {
                package,
                public_key,
                ..
            } => (package, public_key),
            other => panic!("unexpected {other:?}"),
        };
        let cert = make_psd_cert(
            self.m.pki.path(),
            "ca",
            &public_key,
            &device.to_string(),
            &format!("{:08x}", device.serial),
            30,
        );
        if self.meters.is_empty() {
            self.m.time_for(&cert);
        }
        package = self.updated(Request::AuthorizePsd {
            package,
            checkpoint: self.checkpoint(),
            certificate_der: cert,
        });
        let secrets = psd::seal_customer_secrets(
            &mut rng(),
            &self.m.registration,
            &device,
            &CustomerSecrets {
                user_id: USER.into(),
                hmac_key: Zeroizing::new(HMAC_KEY),
                password: Zeroizing::new(PASSWORD.into()),
            },
        )
        .unwrap();
        let req = Request::ConfigurePsd {
            package,
            checkpoint: self.checkpoint(),
            secrets,
        };
        let challenge = match ok(&mut self.m.c, req) {
            Response::PsdConfigured {
                package: p,
                challenge,
                checkpoint,
                ..
            } => {
                self.m.checkpoint = Some(checkpoint);
                package = p;
                challenge
            }
            other => panic!("unexpected {other:?}"),
        };
        let mut state = MeterState {
            device,
            package,
            challenge,
            sequence: 0,
            ascending: 0,
            descending: 0,
            control_total: 0,
            withdrawn: false,
            clerk: false,
            last_request: None,
        };
        let message = self.signed(
            &mut state,
            ProviderCommand::AuthorizeCustomer {
                licensing_zip: ZIP,
                max_descending_mills: psd::MAX_DESCENDING_CAP,
            },
        );
        state.package = self.updated(Request::AuthorizeCustomer {
            package: state.package.clone(),
            checkpoint: self.checkpoint(),
            message,
        });
        self.meters.push(state);
    }

    fn signed(&self, meter: &mut MeterState, command: ProviderCommand) -> ProviderMessage {
        meter.sequence += 1;
        let body = ProviderBody {
            device_id: meter.device.to_string(),
            sequence: meter.sequence,
            command,
        };
        let signature = self.m.provider.sign(&body.signing_bytes()).unwrap();
        ProviderMessage { body, signature }
    }

    /// Runs a command that must answer PsdUpdated; keeps the checkpoint.
    fn updated(&mut self, req: Request) -> SealedPackage {
        match ok(&mut self.m.c, req) {
            Response::PsdUpdated {
                package,
                checkpoint,
                ..
            } => {
                self.m.checkpoint = Some(checkpoint);
                package
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn status(&mut self, i: usize) -> PsdStatus {
        let req = Request::RetrievePsdStatus {
            package: self.meters[i].package.clone(),
            checkpoint: self.checkpoint(),
        };
        match ok(&mut self.m.c, req) {
            Response::PsdStatus(s) => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn indicium_request(
        &self,
        i: usize,
        user: &str,
        key: &[u8; 32],
        postage: u64,
        category: [u8; 4],
    ) -> IndiciumRequest {
        let meter = &self.meters[i];
        let mut req = IndiciumRequest {
            device_id: meter.device.to_string(),
            user_id: user.into(),
            challenge: meter.challenge,
            postage_mills: postage,
            date: DATE,
            origin_zip: ZIP,
            destination_zip: DESTINATION,
            category,
            mac: [0; 32],
        };
        req.mac = psd::indicium_request_mac(key, &req);
        req
    }

    /// Sends a request; on success applies `effect` to the model and stores
    /// the answer; on refusal checks that nothing changed. Returns whether it
    /// was accepted.
    fn run(&mut self, i: usize, req: Request) -> Result<Response, ModuleError> {
        let before_package = self.meters[i].package.clone();
        let before_status = self.status(i);
        let nvm = self.m.nvm_without_audit();
        match self.m.c.run(&req) {
            Ok(r) => Ok(r),
            Err(e) => {
                let e = match e {
                    postvault_module::ClientError::Module(e) => e,
                    other => panic!("transport failure: {other}"),
                };
                assert_eq!(
                    self.m.nvm_without_audit(),
                    nvm,
                    "refusal {e} changed the module's NVM"
                );
                assert_eq!(self.meters[i].package, before_package);
                assert_eq!(
                    self.status(i),
                    before_status,
                    "after refusal {e}, the stored package no longer reads the same"
                );
                Err(e)
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Download {
        meter: usize,
        amount: u64,
        wrong_total: bool,
    },
    Indicium {
        meter: usize,
        postage: u64,
        clerk: bool,
    },
    Correction {
        meter: usize,
        postage: u64,
    },
    Replay {
        meter: usize,
    },
    Altered {
        meter: usize,
    },
    Refund {
        meter: usize,
    },
    AddClerk {
        meter: usize,
    },
    DeleteClerk {
        meter: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let meter = 0..METERS;
    prop_oneof![
        4 => (meter.clone(), 1u64..200_000, proptest::bool::weighted(0.1))
            .prop_map(|(meter, amount, wrong_total)| Op::Download { meter, amount, wrong_total }),
        6 => (meter.clone(), prop_oneof![9 => 1u64..3_000, 1 => 1u64..120_000], any::<bool>())
            .prop_map(|(meter, postage, clerk)| Op::Indicium {
                meter,
                postage,
                clerk
            }),
        1 => (meter.clone(), 1u64..2_000).prop_map(|(meter, postage)| Op::Correction { meter, postage }),
        1 => meter.clone().prop_map(|meter| Op::Replay { meter }),
        1 => meter.clone().prop_map(|meter| Op::Altered { meter }),
        1 => meter.clone().prop_map(|meter| Op::Refund { meter }),
        1 => meter.clone().prop_map(|meter| Op::AddClerk { meter }),
        1 => meter.prop_map(|meter| Op::DeleteClerk { meter }),
    ]
}

/// The user request of the administrator (USER) for `operation`.
fn admin_request(d: &Deployment, i: usize, operation: UserOperation) -> Request {
    let meter = &d.meters[i];
    let mut request = UserRequest {
        device_id: meter.device.to_string(),
        user_id: USER.into(),
        challenge: meter.challenge,
        operation,
        mac: [0; 32],
    };
    request.mac = psd::user_request_mac(&HMAC_KEY, &request);
    Request::PsdUserCommand {
        package: meter.package.clone(),
        checkpoint: d.checkpoint(),
        request,
    }
}

fn step(d: &mut Deployment, op: &Op) {
    match *op {
        Op::Download {
            meter: i,
            amount,
            wrong_total,
        } => {
            let total = d.meters[i].control_total + u64::from(wrong_total);
            let mut st = std::mem::replace(&mut d.meters[i], placeholder());
            let message = d.signed(
                &mut st,
                ProviderCommand::Download {
                    amount_mills: amount,
                    control_total_mills: total,
                },
            );
            d.meters[i] = st;
            let req = Request::DownloadPostageValue {
                package: d.meters[i].package.clone(),
                checkpoint: d.checkpoint(),
                message,
            };
            let fits = !wrong_total
                && !d.meters[i].withdrawn
                && d.meters[i].descending + amount <= psd::MAX_DESCENDING_CAP;
            match d.run(i, req) {
                Ok(Response::PsdUpdated {
                    package,
                    checkpoint,
                    ..
                }) => {
                    assert!(
                        fits,
                        "a download that should be refused was accepted: {op:?}"
                    );
                    d.m.checkpoint = Some(checkpoint);
                    let s = &mut d.meters[i];
                    s.package = package;
                    s.descending += amount;
                    s.control_total += amount;
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => assert!(!fits, "download refused: {e} ({op:?})"),
            }
        }
        Op::Indicium {
            meter: i, postage, ..
        }
        | Op::Correction { meter: i, postage } => {
            let correction = matches!(op, Op::Correction { .. });
            let clerk = clerk_of(op) && d.meters[i].clerk;
            let (user, key) = if clerk {
                (CLERK, &CLERK_KEY)
            } else {
                (USER, &HMAC_KEY)
            };
            let category = if correction { *b"CORR" } else { *b"FC  " };
            let req = d.indicium_request(i, user, key, postage, category);
            let sent = req.clone();
            let fits = !d.meters[i].withdrawn
                && postage <= psd::MAX_POSTAGE_MILLS
                && postage <= d.meters[i].descending;
            let package = d.meters[i].package.clone();
            let checkpoint = d.checkpoint();
            let request = if correction {
                Request::CreateCorrectionIndicium {
                    package,
                    checkpoint,
                    request: req,
                }
            } else {
                Request::CreateIndicium {
                    package,
                    checkpoint,
                    request: req,
                }
            };
            match d.run(i, request) {
                Ok(Response::IndiciumCreated {
                    package,
                    checkpoint,
                    indicium,
                    old_challenge,
                    new_challenge,
                    mac,
                }) => {
                    assert!(
                        fits,
                        "an indicium that should be refused was issued: {op:?}"
                    );
                    assert_eq!(
                        mac,
                        psd::indicium_response_mac(key, &indicium, &old_challenge, &new_challenge)
                    );
                    let ind = Indicium::from_bytes(&indicium).unwrap();
                    let s = &mut d.meters[i];
                    s.descending -= postage;
                    s.ascending += postage;
                    assert_eq!(ind.ascending_register, s.ascending);
                    assert_eq!(u64::from(ind.descending_register), s.descending);
                    assert_eq!(ind.category == MailCategory::CORRECTION, correction);
                    s.package = package;
                    s.challenge = new_challenge;
                    s.last_request = Some(sent);
                    d.m.checkpoint = Some(checkpoint);
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => assert!(!fits, "indicium refused: {e} ({op:?})"),
            }
        }
        Op::Replay { meter: i } | Op::Altered { meter: i } => {
            let Some(mut req) = d.meters[i].last_request.clone() else {
                return;
            };
            if matches!(op, Op::Altered { .. }) {
                req.challenge = d.meters[i].challenge;
                req.postage_mills ^= 1;
                // The MAC is the old one: the request is altered.
            }
            let request = Request::CreateIndicium {
                package: d.meters[i].package.clone(),
                checkpoint: d.checkpoint(),
                request: req,
            };
            let e = d
                .run(i, request)
                .expect_err("a replayed or altered request must be refused");
            assert!(
                matches!(
                    e,
                    ModuleError::Rejected(_)
                        | ModuleError::PsdDenied { .. }
                        | ModuleError::Invalid(_)
                ),
                "{e:?}"
            );
        }
        Op::Refund { meter: i } => {
            let mut st = std::mem::replace(&mut d.meters[i], placeholder());
            let message = d.signed(&mut st, ProviderCommand::Refund { date: DATE });
            d.meters[i] = st;
            let req = Request::CreateRefundIndicium {
                package: d.meters[i].package.clone(),
                checkpoint: d.checkpoint(),
                message,
            };
            let fits = !d.meters[i].withdrawn;
            match d.run(i, req) {
                Ok(Response::RefundIndiciumCreated {
                    package,
                    checkpoint,
                    indicium,
                    refunded_mills,
                }) => {
                    assert!(fits);
                    let s = &mut d.meters[i];
                    assert_eq!(refunded_mills, s.descending);
                    s.ascending += s.descending;
                    s.descending = 0;
                    s.withdrawn = true;
                    let ind = Indicium::from_bytes(&indicium).unwrap();
                    assert_eq!(ind.category, MailCategory::REFUND);
                    assert_eq!(ind.ascending_register, s.ascending);
                    s.package = package;
                    d.m.checkpoint = Some(checkpoint);
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => assert!(!fits, "refund refused: {e}"),
            }
        }
        Op::AddClerk { meter: i } | Op::DeleteClerk { meter: i } => {
            let add = matches!(op, Op::AddClerk { .. });
            let operation = if add {
                let secrets = psd::seal_customer_secrets(
                    &mut rng(),
                    &d.m.registration,
                    &d.meters[i].device,
                    &CustomerSecrets {
                        user_id: CLERK.into(),
                        hmac_key: Zeroizing::new(CLERK_KEY),
                        password: Zeroizing::new("clerk-correct-horse-battery".into()),
                    },
                )
                .unwrap();
                UserOperation::AddUser {
                    secrets,
                    role: Role::Customer,
                    privileges: Privileges::PRINT,
                    settings: PsdUserSettings::default(),
                }
            } else {
                UserOperation::DeleteUser {
                    user_id: CLERK.into(),
                }
            };
            let fits = !d.meters[i].withdrawn && d.meters[i].clerk != add;
            let req = admin_request(d, i, operation);
            match d.run(i, req) {
                Ok(Response::PsdUserAnswer {
                    package,
                    checkpoint,
                    answer,
                    new_challenge,
                    ..
                }) => {
                    assert!(fits, "{op:?} accepted");
                    assert_eq!(answer, UserAnswer::Done);
                    let s = &mut d.meters[i];
                    s.package = package;
                    s.challenge = new_challenge;
                    s.clerk = add;
                    d.m.checkpoint = Some(checkpoint);
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => assert!(!fits, "{op:?} refused: {e}"),
            }
        }
    }
}

fn clerk_of(op: &Op) -> bool {
    matches!(op, Op::Indicium { clerk: true, .. })
}

fn placeholder() -> MeterState {
    MeterState {
        device: DeviceId {
            vendor: 0,
            model: 0,
            serial: 0,
        },
        package: SealedPackage {
            version: 0,
            device_id: String::new(),
            mks_id: [0; 16],
            mks_generation: 0,
            sealed: Vec::new(),
        },
        challenge: [0; 16],
        sequence: 0,
        ascending: 0,
        descending: 0,
        control_total: 0,
        withdrawn: false,
        clerk: false,
        last_request: None,
    }
}

/// The invariants after every step, against the module's own report.
fn check(d: &mut Deployment, previous_ar: &mut [u64]) {
    for (i, previous) in previous_ar.iter_mut().enumerate() {
        let s = d.status(i);
        let m = &d.meters[i];
        assert_eq!(
            s.ascending_mills + s.descending_mills,
            s.control_total_mills,
            "AR + DR = control total"
        );
        assert_eq!(
            s.control_total_mills, m.control_total,
            "control total = the downloads"
        );
        assert_eq!(
            (s.ascending_mills, s.descending_mills),
            (m.ascending, m.descending)
        );
        assert!(s.ascending_mills >= *previous, "AR never decreases");
        *previous = s.ascending_mills;
        assert_eq!(s.state == PsdState::Withdrawn, m.withdrawn);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 64, .. ProptestConfig::default() })]

    #[test]
    fn registers_add_up_after_every_step_of_random_sequences(ops in proptest::collection::vec(op(), 10..50)) {
        let mut d = Deployment::new();
        let mut previous_ar = vec![0; METERS];
        for op in &ops {
            step(&mut d, op);
            check(&mut d, &mut previous_ar);
        }
    }
}
