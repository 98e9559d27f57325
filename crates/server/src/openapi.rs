//! The OpenAPI 3.1 document served at `/openapi.json`, written by hand.
//! A test checks that it describes exactly the routes of `api::ROUTES`.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn credentials_body() -> Value {
    json!({
        "required": true,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Credentials" } } }
    })
}

fn json_body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

/// Adds the entries of the object `more` to the object `into`. The document
/// is built in parts: a single `json!` for all of it exceeds the macro
/// recursion limit.
fn extend(into: &mut Value, more: Value) {
    if let (Value::Object(into), Value::Object(more)) = (into, more) {
        into.extend(more);
    }
}

/// The `{device_id}` path parameter, declared in each operation that takes it.
fn device_id_parameter() -> Value {
    json!({
        "name": "device_id",
        "in": "path",
        "required": true,
        "description": "The meter's device ID.",
        "schema": { "$ref": "#/components/schemas/DeviceId" }
    })
}

/// The document.
pub(crate) fn document() -> Value {
    let bad_body = |extra: &[(&str, &str)]| {
        let mut r = serde_json::Map::new();
        r.insert("400".into(), error_response("Malformed JSON."));
        r.insert(
            "413".into(),
            error_response("The body is larger than the server's limit."),
        );
        r.insert(
            "415".into(),
            error_response("The body is not `application/json`."),
        );
        r.insert(
            "422".into(),
            error_response("Unknown or missing fields, or values out of range."),
        );
        for (code, what) in extra {
            r.insert((*code).into(), error_response(what));
        }
        r
    };
    let mut sign_up_responses = bad_body(&[("409", "The login is taken.")]);
    sign_up_responses.insert("201".into(), json_response("Account created.", "Account"));
    let mut logon_responses = bad_body(&[
        ("401", "Wrong login or password (the same for both)."),
        (
            "423",
            "The account is locked after too many failed logons; the vendor unlocks it.",
        ),
    ]);
    logon_responses.insert(
        "201".into(),
        json_response(
            "Logged on: a bearer token for the other calls.",
            "NewSession",
        ),
    );
    const UNAUTHORIZED: &str = "No bearer token, an unknown or logged-off one, or a session idle beyond the timeout (`session expired, log on again`).";
    const LOCKED: &str = "The account is locked.";
    const NOT_FOUND: &str = "No such meter, or a meter of another account.";
    const BUSY: &str = "No module is free (busy), or a module's checkpoint does not match the store's; try again later.";
    const NOT_PROVIDER: &str =
        "The account is a customer: provider routes need the `provider` or `operator` role.";
    let unauthorized = error_response(UNAUTHORIZED);
    let locked = error_response(LOCKED);
    let not_found = error_response(NOT_FOUND);
    let not_provider = error_response(NOT_PROVIDER);
    // A customer's POST on one of its meters: 201 with `created`, or an error.
    let meter_post = |refused: &str, bad_fields: &str, created: Value| {
        let mut r = bad_body(&[
            ("401", UNAUTHORIZED),
            ("423", LOCKED),
            ("404", NOT_FOUND),
            ("409", refused),
            ("422", bad_fields),
            ("503", BUSY),
        ]);
        r.insert("201".into(), created);
        r
    };
    let mut new_meter_responses = bad_body(&[
        ("401", UNAUTHORIZED),
        ("423", LOCKED),
        (
            "503",
            "No certified meter is ready (the stock is empty: try again later), no module is free, or a module's checkpoint does not match the store's.",
        ),
    ]);
    new_meter_responses.insert(
        "201".into(),
        json_response(
            "A certified, unleased meter is reserved for the account.",
            "NewMeter",
        ),
    );
    let registration_responses = meter_post(
        "The module refused: the meter is not `Unleased` (already registered or withdrawn), or the sealed secrets were altered or sealed for another meter or key.",
        "Unknown or missing fields, a bad user ID or licensing ZIP, or bad hex.",
        json_response(
            "The customer's secrets are in the meter. The client checks `mac` against `configure_mac` under its HMAC key.",
            "Registered",
        ),
    );
    let purchase_responses = meter_post(
        "The module refused (the meter is not `Leased`, or the amount would take the descending register above its maximum), or the server holds no provider key (`provider_in_server` is false: the provider downloads through POST /v1/provider/messages).",
        "Unknown or missing fields, or an amount out of range.",
        json_response(
            "The server's provider signed a Download and the meter took it.",
            "Purchased",
        ),
    );
    let print_refused = "The module refused: the meter is not `Leased`, the challenge is not the meter's current one (a replayed request), the MAC does not match (a wrong key or an altered request), or the descending register holds less than the postage.";
    let print_bad_fields = "Unknown or missing fields, postage outside the deployment's limits, a bad ZIP or date, a bad category, or bad hex.";
    let print_responses = meter_post(
        print_refused,
        print_bad_fields,
        json_response(
            "The indicium. The client checks `mac` against `indicium_response_mac` and `old_challenge` against the challenge it sent, and keeps `new_challenge` for the next print.",
            "Printed",
        ),
    );
    let correction_responses = meter_post(
        print_refused,
        "Unknown or missing fields, a category other than `CORR`, postage outside the deployment's limits, a bad ZIP or date, or bad hex.",
        json_response(
            "The correction indicium, checked as a printed one.",
            "Printed",
        ),
    );
    let refund_responses = meter_post(
        "The module refused (the meter is not `Leased` or in password reset), or the server holds no provider key (`provider_in_server` is false: the provider refunds through POST /v1/provider/messages).",
        "Unknown fields (the body is `{}`).",
        json_response(
            "The meter is withdrawn; its remaining descending register is refunded.",
            "Refunded",
        ),
    );
    let mut provider_message_responses = bad_body(&[
        ("401", UNAUTHORIZED),
        ("423", LOCKED),
        ("403", NOT_PROVIDER),
        ("404", "No such meter (the body's `device_id`)."),
        (
            "409",
            "The module refused: the meter is in the wrong state, the sequence is not above the meter's last (a replayed message), the signature does not verify (an altered message or another key), the Download's control total is not the meter's, or the amount is too large.",
        ),
        (
            "422",
            "Unknown or missing fields, a bad device ID, ZIP or date, values out of range, or bad hex.",
        ),
        ("503", BUSY),
    ]);
    provider_message_responses.insert(
        "201".into(),
        json_response("The meter ran the command.", "ProviderResult"),
    );
    let mut staff_account_responses = bad_body(&[
        ("401", UNAUTHORIZED),
        ("423", LOCKED),
        (
            "403",
            "The account is not an operator: only operators make provider and operator accounts.",
        ),
        ("409", "The login is taken."),
        (
            "422",
            "Unknown or missing fields, a bad login, a password too short or too long, or a role other than `provider` or `operator`.",
        ),
    ]);
    staff_account_responses.insert("201".into(), json_response("Account created.", "Account"));
    let mut paths = json!({
        "/healthz": { "get": {
            "summary": "Liveness and store check.",
            "responses": { "200": json_response("The server and its store answer.", "Health") }
        }},
        "/openapi.json": { "get": {
            "summary": "This document.",
            "responses": { "200": { "description": "The OpenAPI 3.1 document.", "content": { "application/json": {} } } }
        }},
        "/v1/accounts": { "post": {
            "summary": "Sign up: create a customer account.",
            "requestBody": credentials_body(),
            "responses": sign_up_responses
        }},
        "/v1/sessions": { "post": {
            "summary": "Log on: trade a login and password for a session token. Failed logons are counted; at the server's limit the account locks.",
            "requestBody": credentials_body(),
            "responses": logon_responses
        }},
        "/v1/sessions/current": { "delete": {
            "summary": "Log off: the token stops working.",
            "security": [ { "bearer": [] } ],
            "responses": { "204": { "description": "Logged off." }, "401": unauthorized.clone(), "423": locked.clone() }
        }},
        "/v1/me": { "get": {
            "summary": "The logged-on account. Each call counts as activity for the session's idle timeout.",
            "security": [ { "bearer": [] } ],
            "responses": { "200": json_response("The account.", "Me"), "401": unauthorized.clone(), "423": locked.clone() }
        }}
    });
    extend(
        &mut paths,
        json!({
            "/v1/deployment": { "get": {
                "summary": "The deployment's public facts: the key clients seal their secrets to, the CA certificate, the provider key and the postage limits.",
                "responses": { "200": json_response("The deployment.", "Deployment") }
            }},
            "/v1/certificates/{device_id}": { "get": {
                "summary": "A meter's PSD certificate.",
                "parameters": [ device_id_parameter() ],
                "responses": {
                    "200": json_response("The certificate.", "Certificate"),
                    "404": error_response("No such meter, or it has no certificate.")
                }
            }},
            "/v1/meters": {
                "post": {
                    "summary": "Lease a meter: reserves a pre-made, certified meter for the account.",
                    "security": [ { "bearer": [] } ],
                    "requestBody": json_body("Empty"),
                    "responses": new_meter_responses
                },
                "get": {
                    "summary": "The account's meters.",
                    "security": [ { "bearer": [] } ],
                    "responses": { "200": json_response("The meters.", "MeterList"), "401": unauthorized.clone(), "423": locked.clone() }
                }
            },
            "/v1/meters/{device_id}": { "get": {
                "summary": "One of the account's meters: registers, state and current challenge.",
                "security": [ { "bearer": [] } ],
                "parameters": [ device_id_parameter() ],
                "responses": {
                    "200": json_response("The meter.", "MeterView"),
                    "401": unauthorized.clone(), "423": locked.clone(), "404": not_found.clone()
                }
            }}
        }),
    );
    extend(
        &mut paths,
        json!({
            "/v1/meters/{device_id}/registration": { "post": {
                "summary": "Register the meter (Configure PSD, then Authorize Customer when the server holds a provider key): loads the customer's sealed user ID, HMAC key and password.",
                "security": [ { "bearer": [] } ],
                "parameters": [ device_id_parameter() ],
                "requestBody": json_body("Registration"),
                "responses": registration_responses
            }},
            "/v1/meters/{device_id}/purchases": { "post": {
                "summary": "Buy postage: the server's provider signs a Download of the amount into the descending register.",
                "security": [ { "bearer": [] } ],
                "parameters": [ device_id_parameter() ],
                "requestBody": json_body("Purchase"),
                "responses": purchase_responses
            }},
            "/v1/meters/{device_id}/indicia": {
                "post": {
                    "summary": "Print: the meter checks the request's MAC and challenge, debits the postage and signs an indicium.",
                    "security": [ { "bearer": [] } ],
                    "parameters": [ device_id_parameter() ],
                    "requestBody": json_body("PrintRequest"),
                    "responses": print_responses
                },
                "get": {
                    "summary": "The meter's indicia, by piece.",
                    "security": [ { "bearer": [] } ],
                    "parameters": [ device_id_parameter() ],
                    "responses": {
                        "200": json_response("The indicia.", "IndiciumList"),
                        "401": unauthorized.clone(), "423": locked.clone(), "404": not_found.clone()
                    }
                }
            },
            "/v1/meters/{device_id}/corrections": { "post": {
                "summary": "Print a correction indicium (category `CORR`), as a print.",
                "security": [ { "bearer": [] } ],
                "parameters": [ device_id_parameter() ],
                "requestBody": json_body("CorrectionRequest"),
                "responses": correction_responses
            }},
            "/v1/meters/{device_id}/refund": { "post": {
                "summary": "Refund: the server's provider signs a Refund; the meter issues a refund indicium for its whole descending register and is withdrawn.",
                "security": [ { "bearer": [] } ],
                "parameters": [ device_id_parameter() ],
                "requestBody": json_body("Empty"),
                "responses": refund_responses
            }},
            "/v1/meters/{device_id}/money": { "get": {
                "summary": "The meter's downloads and refunds.",
                "security": [ { "bearer": [] } ],
                "parameters": [ device_id_parameter() ],
                "responses": {
                    "200": json_response("The money movements.", "MoneyList"),
                    "401": unauthorized.clone(), "423": locked.clone(), "404": not_found
                }
            }}
        }),
    );
    extend(
        &mut paths,
        json!({
            "/v1/provider/meters/{device_id}": { "get": {
                "summary": "Any meter, as the provider needs it to build a message: owner, state, registers and the next provider sequence.",
                "security": [ { "bearer": [] } ],
                "parameters": [ device_id_parameter() ],
                "responses": {
                    "200": json_response("The meter.", "ProviderMeterView"),
                    "401": unauthorized.clone(), "423": locked.clone(), "403": not_provider,
                    "404": error_response("No such meter.")
                }
            }},
            "/v1/provider/messages": { "post": {
                "summary": "Send a signed provider message (Authorize Customer, Download, Refund, Begin Password Reset) to its meter.",
                "security": [ { "bearer": [] } ],
                "requestBody": json_body("ProviderMessageRequest"),
                "responses": provider_message_responses
            }},
            "/v1/staff/accounts": { "post": {
                "summary": "An operator makes a provider account (the provider's own logon for POST /v1/provider/messages) or another operator's.",
                "security": [ { "bearer": [] } ],
                "requestBody": json_body("StaffAccount"),
                "responses": staff_account_responses
            }}
        }),
    );
    let mut schemas = json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string", "description": "What went wrong and what to do." } } },
        "Health": { "type": "object", "required": ["status", "store"], "properties": {
            "status": { "const": "ok" }, "store": { "enum": ["sqlite", "postgres"] } } },
        "Credentials": { "type": "object", "additionalProperties": false, "required": ["login", "password"], "properties": {
            "login": { "type": "string", "pattern": "^[A-Za-z0-9._@-]{3,64}$" },
            "password": { "type": "string", "minLength": 12, "description": "At least 12 characters, at most 1024 bytes." } } },
        "StaffAccount": { "type": "object", "additionalProperties": false, "required": ["login", "password", "role"], "properties": {
            "login": { "type": "string", "pattern": "^[A-Za-z0-9._@-]{3,64}$" },
            "password": { "type": "string", "minLength": 12, "description": "At least 12 characters, at most 1024 bytes." },
            "role": { "enum": ["provider", "operator"] } } },
        "Account": { "type": "object", "required": ["login", "role"], "properties": {
            "login": { "type": "string" }, "role": { "enum": ["customer", "provider", "operator"] } } },
        "NewSession": { "type": "object", "required": ["token", "login", "role", "idle_timeout_secs"], "properties": {
            "token": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "login": { "type": "string" },
            "role": { "type": "string" }, "idle_timeout_secs": { "type": "integer" } } },
        "Me": { "type": "object", "required": ["login", "role", "created", "session"], "properties": {
            "login": { "type": "string" }, "role": { "type": "string" },
            "created": { "type": "integer", "description": "Unix seconds." },
            "session": { "type": "object", "properties": {
                "created": { "type": "integer" }, "idle_timeout_secs": { "type": "integer" } } } } }
    });
    extend(
        &mut schemas,
        json!({
            "Empty": { "type": "object", "additionalProperties": false, "description": "The empty object `{}`." },
            "DeviceId": { "type": "string", "pattern": "^[0-9]+-[0-9]+-[0-9]+$",
                "description": "vendor-model-serial in decimal (e.g. `0042-0001-00000017`; leading zeros are optional, `42-1-17`)." },
            "MeterState": { "enum": ["Raw", "Unleased", "Assigned", "Leased", "PasswordReset", "Withdrawn"] },
            "Hex16": { "type": "string", "pattern": "^[0-9a-f]{32}$", "description": "16 bytes, lowercase hex." },
            "Hex32": { "type": "string", "pattern": "^[0-9a-f]{64}$", "description": "32 bytes, lowercase hex." },
            "Hex": { "type": "string", "pattern": "^([0-9a-f]{2})*$", "description": "Bytes, lowercase hex." },
            "Mills": { "type": "integer", "minimum": 0, "description": "Money, mills (1/1000 USD)." },
            "Zip": { "type": "integer", "minimum": 0, "maximum": 999999999,
                "description": "ZIP5 * 10000 + plus-4 (10001-0001 is 100010001; a bare 10001 is 100010000)." },
            "Date": { "type": "integer", "minimum": 10101, "maximum": 99991231, "description": "A calendar date, the integer YYYYMMDD (e.g. 20261123)." },
            "Deployment": { "type": "object", "required": ["registration_public_key", "ca_certificate_pem", "provider_public_key_pem",
                    "provider_in_server", "min_postage_mills", "max_postage_mills"], "properties": {
                "registration_public_key": { "$ref": "#/components/schemas/Hex32", "description": "The X25519 HPKE key clients seal their secrets to." },
                "ca_certificate_pem": { "type": "string", "description": "The CA certificate that signs PSD certificates, PEM." },
                "provider_public_key_pem": { "type": "string", "description": "The provider's ECDSA P-256 public key, PEM." },
                "provider_in_server": { "type": "boolean", "description": "True: purchases and refunds are signed by the server's own development provider." },
                "min_postage_mills": { "$ref": "#/components/schemas/Mills" },
                "max_postage_mills": { "$ref": "#/components/schemas/Mills" } } },
            "Certificate": { "type": "object", "required": ["device_id", "certificate_pem"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "certificate_pem": { "type": "string", "description": "The PSD certificate, PEM." } } },
            "NewMeter": { "type": "object", "required": ["device_id", "state"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "state": { "$ref": "#/components/schemas/MeterState" } } },
            "HpkeSealed": { "type": "object", "additionalProperties": false, "required": ["enc", "ciphertext"],
                "description": "The serde JSON of `postvault_module::psd::HpkeSealed`, from `psd::seal_customer_secrets`.", "properties": {
                "enc": { "$ref": "#/components/schemas/Hex32", "description": "The encapsulated key." },
                "ciphertext": { "$ref": "#/components/schemas/Hex", "description": "Ciphertext and tag." } } }
        }),
    );
    extend(
        &mut schemas,
        json!({
            "Registration": { "type": "object", "additionalProperties": false, "required": ["user_id", "secrets", "licensing_zip"], "properties": {
                "user_id": { "type": "string", "description": "The customer's user ID within the meter (as sealed in `secrets`)." },
                "secrets": { "$ref": "#/components/schemas/HpkeSealed" },
                "licensing_zip": { "$ref": "#/components/schemas/Zip" } } },
            "Registered": { "type": "object", "required": ["device_id", "state", "user_id", "challenge", "mac", "certificate_pem"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "state": { "enum": ["Leased", "Assigned"], "description": "`Assigned` when the server holds no provider key (the provider authorizes the customer)." },
                "user_id": { "type": "string" },
                "challenge": { "$ref": "#/components/schemas/Hex16", "description": "The challenge for the first print." },
                "mac": { "$ref": "#/components/schemas/Hex32", "description": "`psd::configure_mac(hmac_key, device, user_id, challenge)`." },
                "certificate_pem": { "type": "string", "description": "The PSD certificate, PEM." } } },
            "MeterView": { "type": "object", "required": ["device_id", "state", "ascending_mills", "descending_mills", "control_total_mills",
                    "max_descending_mills", "piece_count", "licensing_zip", "challenge", "certificate_pem"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "state": { "$ref": "#/components/schemas/MeterState" },
                "ascending_mills": { "$ref": "#/components/schemas/Mills" },
                "descending_mills": { "$ref": "#/components/schemas/Mills" },
                "control_total_mills": { "$ref": "#/components/schemas/Mills" },
                "max_descending_mills": { "$ref": "#/components/schemas/Mills" },
                "piece_count": { "type": "integer", "minimum": 0 },
                "licensing_zip": { "oneOf": [ { "$ref": "#/components/schemas/Zip" }, { "type": "null" } ] },
                "challenge": { "oneOf": [ { "$ref": "#/components/schemas/Hex16" }, { "type": "null" } ], "description": "The challenge the next print must carry." },
                "certificate_pem": { "type": ["string", "null"] } } },
            "MeterList": { "type": "object", "required": ["meters"], "properties": {
                "meters": { "type": "array", "items": { "$ref": "#/components/schemas/MeterView" } } } },
            "Purchase": { "type": "object", "additionalProperties": false, "required": ["amount_mills"], "properties": {
                "amount_mills": { "type": "integer", "minimum": 1, "description": "Postage to add to the descending register, mills." } } },
            "Purchased": { "type": "object", "required": ["device_id", "amount_mills", "descending_mills", "control_total_mills"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "amount_mills": { "$ref": "#/components/schemas/Mills" },
                "descending_mills": { "$ref": "#/components/schemas/Mills" },
                "control_total_mills": { "$ref": "#/components/schemas/Mills" } } },
            "PrintRequest": { "type": "object", "additionalProperties": false,
                "required": ["user_id", "challenge", "postage_mills", "date", "origin_zip", "destination_zip", "category", "mac"], "properties": {
                "user_id": { "type": "string" },
                "challenge": { "$ref": "#/components/schemas/Hex16", "description": "The meter's current challenge." },
                "postage_mills": { "type": "integer", "minimum": 1, "description": "Between the deployment's `min_postage_mills` and `max_postage_mills`." },
                "date": { "$ref": "#/components/schemas/Date" },
                "origin_zip": { "$ref": "#/components/schemas/Zip" },
                "destination_zip": { "$ref": "#/components/schemas/Zip" },
                "category": { "type": "string", "pattern": "^[ -~]{1,4}$", "description": "Mail category, 1 to 4 ASCII characters (e.g. `FC`); the server pads it with spaces to 4." },
                "mac": { "$ref": "#/components/schemas/Hex32",
                    "description": "`psd::indicium_request_mac(hmac_key, IndiciumRequest { device_id, user_id, challenge, postage_mills, date, origin_zip, destination_zip, category (space-padded), mac: [0; 32] })`." } } },
            "CorrectionRequest": { "description": "A print request whose category is `CORR`.", "allOf": [
                { "$ref": "#/components/schemas/PrintRequest" },
                { "properties": { "category": { "const": "CORR" } } } ] },
            "Printed": { "type": "object", "required": ["device_id", "piece", "indicium", "old_challenge", "new_challenge", "mac",
                    "ascending_mills", "descending_mills"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "piece": { "type": "integer", "minimum": 0, "description": "The meter's piece number." },
                "indicium": { "type": "string", "pattern": "^[0-9a-f]{226}$", "description": "The signed indicium (113 bytes), lowercase hex." },
                "old_challenge": { "$ref": "#/components/schemas/Hex16", "description": "The challenge the request carried." },
                "new_challenge": { "$ref": "#/components/schemas/Hex16", "description": "The challenge for the next print." },
                "mac": { "$ref": "#/components/schemas/Hex32", "description": "`psd::indicium_response_mac(hmac_key, indicium, old_challenge, new_challenge)`." },
                "ascending_mills": { "$ref": "#/components/schemas/Mills" },
                "descending_mills": { "$ref": "#/components/schemas/Mills" } } },
            "Refunded": { "type": "object", "required": ["device_id", "indicium", "refunded_mills", "state"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "indicium": { "$ref": "#/components/schemas/Hex", "description": "The signed refund indicium (category `RFND`)." },
                "refunded_mills": { "$ref": "#/components/schemas/Mills" },
                "state": { "const": "Withdrawn" } } }
        }),
    );
    extend(
        &mut schemas,
        json!({
            "IndiciumEntry": { "type": "object", "required": ["piece", "postage_mills", "category", "user_id", "time",
                    "ascending_mills", "descending_mills", "indicium"], "properties": {
                "piece": { "type": "integer", "minimum": 0 },
                "postage_mills": { "$ref": "#/components/schemas/Mills" },
                "category": { "type": "string" },
                "user_id": { "type": "string" },
                "time": { "type": "integer", "description": "Unix seconds." },
                "ascending_mills": { "$ref": "#/components/schemas/Mills", "description": "After this piece." },
                "descending_mills": { "$ref": "#/components/schemas/Mills", "description": "After this piece." },
                "indicium": { "$ref": "#/components/schemas/Hex" } } },
            "IndiciumList": { "type": "object", "required": ["indicia"], "properties": {
                "indicia": { "type": "array", "items": { "$ref": "#/components/schemas/IndiciumEntry" }, "description": "By piece." } } },
            "MoneyEntry": { "type": "object", "required": ["kind", "amount_mills", "time", "reference"], "properties": {
                "kind": { "enum": ["download", "refund"] },
                "amount_mills": { "$ref": "#/components/schemas/Mills" },
                "time": { "type": "integer", "description": "Unix seconds." },
                "reference": { "type": "string", "description": "The provider's or the customer's reference." } } },
            "MoneyList": { "type": "object", "required": ["money"], "properties": {
                "money": { "type": "array", "items": { "$ref": "#/components/schemas/MoneyEntry" } } } },
            "ProviderMeterView": { "type": "object", "required": ["device_id", "owner", "state", "next_sequence",
                    "control_total_mills", "descending_mills", "ascending_mills"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "owner": { "type": ["string", "null"], "description": "The login of the account that leases it." },
                "state": { "$ref": "#/components/schemas/MeterState" },
                "next_sequence": { "type": "integer", "minimum": 0, "description": "The sequence the next provider message must carry." },
                "control_total_mills": { "$ref": "#/components/schemas/Mills", "description": "What a Download's `control_total_mills` must be." },
                "descending_mills": { "$ref": "#/components/schemas/Mills" },
                "ascending_mills": { "$ref": "#/components/schemas/Mills" } } },
            "ProviderCommand": { "description": "The serde JSON of `postvault_module::psd::ProviderCommand`: an object with one key, the command.", "oneOf": [
                { "type": "object", "additionalProperties": false, "required": ["AuthorizeCustomer"], "properties": {
                    "AuthorizeCustomer": { "type": "object", "additionalProperties": false, "required": ["licensing_zip", "max_descending_mills"], "properties": {
                        "licensing_zip": { "$ref": "#/components/schemas/Zip" },
                        "max_descending_mills": { "type": "integer", "minimum": 1, "maximum": 500000 } } } } },
                { "type": "object", "additionalProperties": false, "required": ["Download"], "properties": {
                    "Download": { "type": "object", "additionalProperties": false, "required": ["amount_mills", "control_total_mills"], "properties": {
                        "amount_mills": { "type": "integer", "minimum": 1 },
                        "control_total_mills": { "$ref": "#/components/schemas/Mills", "description": "The meter's current control total." } } } } },
                { "type": "object", "additionalProperties": false, "required": ["Refund"], "properties": {
                    "Refund": { "type": "object", "additionalProperties": false, "required": ["date"], "properties": {
                        "date": { "$ref": "#/components/schemas/Date" } } } } },
                { "type": "object", "additionalProperties": false, "required": ["BeginPasswordReset"], "properties": {
                    "BeginPasswordReset": { "type": "object", "additionalProperties": false, "required": ["user_id"], "properties": {
                        "user_id": { "type": "string" } } } } } ] },
            "ProviderMessage": { "type": "object", "additionalProperties": false, "required": ["body", "signature"],
                "description": "The serde JSON of `postvault_module::psd::ProviderMessage`.", "properties": {
                "body": { "type": "object", "additionalProperties": false, "required": ["device_id", "sequence", "command"], "properties": {
                    "device_id": { "$ref": "#/components/schemas/DeviceId" },
                    "sequence": { "type": "integer", "minimum": 0, "description": "The meter's `next_sequence`; strictly increasing per meter." },
                    "command": { "$ref": "#/components/schemas/ProviderCommand" } } },
                "signature": { "type": "string", "pattern": "^[0-9a-f]{128}$",
                    "description": "ECDSA P-256 / SHA-256 over `body.signing_bytes()`, r || s (64 bytes), lowercase hex." } } },
            "ProviderMessageRequest": { "type": "object", "additionalProperties": false, "required": ["message"], "properties": {
                "message": { "$ref": "#/components/schemas/ProviderMessage" } } },
            "ProviderResult": { "type": "object", "required": ["device_id", "state", "ascending_mills", "descending_mills",
                    "control_total_mills", "indicium", "refunded_mills"], "properties": {
                "device_id": { "$ref": "#/components/schemas/DeviceId" },
                "state": { "$ref": "#/components/schemas/MeterState" },
                "ascending_mills": { "$ref": "#/components/schemas/Mills" },
                "descending_mills": { "$ref": "#/components/schemas/Mills" },
                "control_total_mills": { "$ref": "#/components/schemas/Mills" },
                "indicium": { "oneOf": [ { "$ref": "#/components/schemas/Hex" }, { "type": "null" } ], "description": "The refund indicium (Refund only)." },
                "refunded_mills": { "type": ["integer", "null"], "minimum": 0, "description": "Refund only." } } }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "postvault postal server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Online postage metering. Every error is `{\"error\": MESSAGE}` with a 4xx or 5xx status; unknown JSON fields are refused."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "The token from POST /v1/sessions (64 hex digits)." } },
            "schemas": schemas
        }
    })
}
