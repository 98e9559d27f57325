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
    let unauthorized = error_response(
        "No bearer token, an unknown or logged-off one, or a session idle beyond the timeout (`session expired, log on again`).",
    );
    let locked = error_response("The account is locked.");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "postvault postal server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Online postage metering. Every error is `{\"error\": MESSAGE}` with a 4xx or 5xx status; unknown JSON fields are refused."
        },
        "paths": {
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
                "responses": { "200": json_response("The account.", "Me"), "401": unauthorized, "423": locked }
            }}
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "The token from POST /v1/sessions (64 hex digits)." } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string", "description": "What went wrong and what to do." } } },
                "Health": { "type": "object", "required": ["status", "store"], "properties": {
                    "status": { "const": "ok" }, "store": { "enum": ["sqlite", "postgres"] } } },
                "Credentials": { "type": "object", "additionalProperties": false, "required": ["login", "password"], "properties": {
                    "login": { "type": "string", "pattern": "^[A-Za-z0-9._@-]{3,64}$" },
                    "password": { "type": "string", "minLength": 12, "description": "At least 12 characters, at most 1024 bytes." } } },
                "Account": { "type": "object", "required": ["login", "role"], "properties": {
                    "login": { "type": "string" }, "role": { "enum": ["customer", "operator"] } } },
                "NewSession": { "type": "object", "required": ["token", "login", "role", "idle_timeout_secs"], "properties": {
                    "token": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "login": { "type": "string" },
                    "role": { "type": "string" }, "idle_timeout_secs": { "type": "integer" } } },
                "Me": { "type": "object", "required": ["login", "role", "created", "session"], "properties": {
                    "login": { "type": "string" }, "role": { "type": "string" },
                    "created": { "type": "integer", "description": "Unix seconds." },
                    "session": { "type": "object", "properties": {
                        "created": { "type": "integer" }, "idle_timeout_secs": { "type": "integer" } } } } }
            }
        }
    })
}
