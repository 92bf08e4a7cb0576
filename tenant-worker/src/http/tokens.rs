//! `GET,POST /v1/tokens` and `DELETE /v1/tokens/{id}`: a tenant manages its
//! own API tokens. A new token's value is in the `201` answer and nowhere
//! else; the store keeps its SHA-256.

use bulkhead_shared::api_token;
use hyper::{Response, StatusCode};

use super::auth::TokenError;
use super::routes::{IssuedToken, NewToken, TokenList};
use super::{error, internal, json_response, ApiState, Resp};

/// Longest token name, in characters.
const MAX_NAME: usize = 64;
/// Token lifetimes, in seconds: a minute to ten years.
const MIN_EXPIRY_S: u64 = 60;
const MAX_EXPIRY_S: u64 = 10 * 365 * 86_400;

pub async fn list(state: &ApiState) -> Resp {
    match state.tokens.list().await {
        Ok(tokens) => json_response(
            StatusCode::OK,
            &TokenList {
                tokens,
                next_cursor: None,
            },
        ),
        Err(e) => internal(e),
    }
}

pub async fn create(state: &ApiState, body: &[u8]) -> Resp {
    let req: NewToken = match bulkhead_voice::agent::object_from_json(body) {
        Ok(r) => r,
        Err(e) => {
            let field = (!e.field.is_empty()).then_some(e.field.as_str());
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                &e.message,
                field,
            );
        }
    };
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            &format!("name must be 1 to {MAX_NAME} printable characters"),
            Some("name"),
        );
    }
    if req
        .expires_in_s
        .is_some_and(|s| !(MIN_EXPIRY_S..=MAX_EXPIRY_S).contains(&s))
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            &format!("expires_in_s must be {MIN_EXPIRY_S} to {MAX_EXPIRY_S} seconds"),
            Some("expires_in_s"),
        );
    }
    let now = std::time::SystemTime::now();
    let expires_at = req
        .expires_in_s
        .map(|s| bulkhead_shared::time::rfc3339(now + std::time::Duration::from_secs(s)));
    let issued = api_token::issue();
    let added = state
        .tokens
        .add(
            issued.id.clone(),
            name.to_owned(),
            issued.sha256_hex,
            expires_at.clone(),
        )
        .await;
    match added {
        Ok(()) => json_response(
            StatusCode::CREATED,
            &IssuedToken {
                id: issued.id,
                name: name.to_owned(),
                token: issued.token,
                created_at: bulkhead_shared::time::rfc3339(now),
                expires_at,
            },
        ),
        Err(e @ TokenError::TooMany) => error(
            StatusCode::CONFLICT,
            "too_many_tokens",
            &e.to_string(),
            None,
        ),
        Err(e) => internal(e),
    }
}

/// Revokes a token of this tenant; revoking the one in use is allowed (the
/// answer is the last thing it gets).
pub async fn revoke(state: &ApiState, id: &str) -> Resp {
    if !api_token::is_token_id(id) {
        return no_token();
    }
    match state.tokens.revoke(id).await {
        Ok(()) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Default::default())
            .expect("valid response"),
        Err(TokenError::NotFound) => no_token(),
        Err(e) => internal(e),
    }
}

fn no_token() -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no token with this id",
        None,
    )
}
