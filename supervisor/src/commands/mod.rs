//! Carrying out a parsed command: admin-socket calls and output. Exit
//! statuses (INTERFACES.md): 0 success, 1 the operation failed, 2 bad usage.

mod client;
pub mod demo;
mod export;
mod output;
pub mod serve;

use std::path::Path;
use std::process::ExitCode;

use bulkhead_shared::{Number, TenantId};
use hyper::Method;
use serde_json::{json, Value};

use crate::cli::{Cli, Command, EgressCmd, NumberCmd, TenantCmd};
use crate::limits::LimitOverrides;
pub use client::call;

/// A command's failure and the exit status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl CommandError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::from(2),
            Self::Failed(_) => ExitCode::from(1),
        }
    }
}

fn cidrs(blocks: &[String]) -> Result<Vec<bulkhead_shared::Cidr>, CommandError> {
    blocks.iter().map(|b| b.parse().map_err(usage)).collect()
}

fn usage<E: std::fmt::Display>(e: E) -> CommandError {
    CommandError::Usage(e.to_string())
}

pub async fn run(cli: Cli) -> Result<(), CommandError> {
    let socket = cli.socket.as_path();
    match cli.command {
        Command::Serve(args) => serve::run(args).await.map_err(CommandError::Failed),
        Command::Demo { once } => demo::run(once).await.map_err(CommandError::Failed),
        Command::Tenant(cmd) => tenant(socket, cli.json, cmd).await,
        Command::Number(cmd) => number(socket, cli.json, cmd).await,
        Command::Egress(cmd) => egress(socket, cli.json, cmd).await,
        Command::Apply { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            let mut req: crate::api::ApplyRequest = toml::from_str(&text)
                .map_err(|e| usage(format!("invalid tenant file {}: {e}", file.display())))?;
            for auth in req.tenants.iter_mut().filter_map(|t| t.trunk_auth.as_mut()) {
                auth.resolve_password_file().map_err(usage)?;
            }
            let v = admin(
                socket,
                Method::POST,
                "/v1/apply",
                Some(serde_json::to_value(req).expect("serializable")),
            )
            .await?;
            output::apply(&v, cli.json);
            Ok(())
        }
        Command::Export(crate::cli::ExportCmd::Kamailio { address, no_header }) => {
            let address = match address {
                Some(a) => export::check_address(&a).map_err(usage)?.to_owned(),
                None => {
                    let status = admin(socket, Method::GET, "/v1/status", None).await?;
                    export::router_address(&status).map_err(|e| CommandError::Failed(e.into()))?
                }
            };
            let tenants = admin(socket, Method::GET, "/v1/tenants", None).await?;
            let numbers = export::numbers(&tenants);
            if cli.json {
                let rows: Vec<Value> = numbers
                    .iter()
                    .map(|(n, t)| json!({"number": n, "tenant": t}))
                    .collect();
                println!("{}", json!({"address": address, "numbers": rows}));
            } else {
                print!("{}", export::htable(&address, &numbers, !no_header));
            }
            Ok(())
        }
        Command::Audit { id } => {
            let path = match id {
                Some(id) => format!("/v1/audit?tenant={}", TenantId::parse(&id).map_err(usage)?),
                None => "/v1/audit".to_string(),
            };
            let v = admin(socket, Method::GET, &path, None).await?;
            output::audit(&v, cli.json);
            let escaped = v["tenants"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|t| t["probes"].as_array().into_iter().flatten())
                .filter(|p| p["outcome"] == "escaped")
                .count();
            if escaped > 0 {
                return Err(CommandError::Failed(anyhow::anyhow!(
                    "the audit found {escaped} escape(s)"
                )));
            }
            Ok(())
        }
        Command::Status => {
            let v = admin(socket, Method::GET, "/v1/status", None).await?;
            output::status(&v, cli.json);
            Ok(())
        }
        Command::MasterKey(crate::cli::MasterKeyCmd::Rotate) => {
            let v = admin(socket, Method::POST, "/v1/master-key/rotate", None).await?;
            output::record(&v, cli.json);
            Ok(())
        }
        Command::History { verify } => {
            let path = if verify {
                "/v1/history?verify=true"
            } else {
                "/v1/history"
            };
            let v = admin(socket, Method::GET, path, None).await?;
            output::history(&v, cli.json);
            if let Some(broken) = v.get("broken").filter(|b| !b.is_null()) {
                return Err(CommandError::Failed(anyhow::anyhow!(
                    "the history is broken at entry {}: {}",
                    broken["seq"],
                    broken["why"].as_str().unwrap_or("")
                )));
            }
            if verify && !cli.json {
                println!(
                    "verified: {} entries, chain intact",
                    v["events"].as_array().map_or(0, Vec::len)
                );
            }
            Ok(())
        }
    }
}

async fn admin(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CommandError> {
    call(socket, method, path, body)
        .await
        .map_err(|e| CommandError::Failed(e.into()))
}

async fn tenant(socket: &Path, as_json: bool, cmd: TenantCmd) -> Result<(), CommandError> {
    match cmd {
        TenantCmd::Add {
            id,
            numbers,
            sip_port,
            http_port,
            limits,
            trunk_allow,
        } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let trunk_allow = cidrs(&trunk_allow)?;
            let numbers: Vec<Number> = numbers
                .iter()
                .map(|n| Number::parse(n))
                .collect::<Result<_, _>>()
                .map_err(usage)?;
            let limits = LimitOverrides::from_pairs(&limits).map_err(usage)?;
            let body = json!({"id": id, "numbers": numbers, "sip_port": sip_port,
                              "http_port": http_port, "limits": limits,
                              "trunk_allow": trunk_allow});
            let v = admin(socket, Method::POST, "/v1/tenants", Some(body)).await?;
            output::record(&v, as_json);
        }
        TenantCmd::Trunk { id, allow } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let body = json!({ "allow": cidrs(&allow)? });
            let path = format!("/v1/tenants/{id}/trunk");
            let v = admin(socket, Method::POST, &path, Some(body)).await?;
            output::record(&v, as_json);
        }
        TenantCmd::TrunkAuth {
            id,
            username,
            password_file,
            off: _,
        } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let auth = match username {
                None => None,
                Some(username) => {
                    let mut spec = crate::api::TrunkAuthSpec {
                        username,
                        password: None,
                        password_file,
                    };
                    spec.resolve_password_file().map_err(usage)?;
                    Some(spec)
                }
            };
            let body =
                serde_json::to_value(crate::api::TrunkAuthRequest { auth }).expect("serializable");
            let path = format!("/v1/tenants/{id}/trunk_auth");
            let v = admin(socket, Method::POST, &path, Some(body)).await?;
            output::record(&v, as_json);
        }
        TenantCmd::Limits { id, limits } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let limits = LimitOverrides::from_pairs(&limits).map_err(usage)?;
            let body = serde_json::to_value(limits).expect("limits serialize");
            let path = format!("/v1/tenants/{id}/limits");
            let v = admin(socket, Method::POST, &path, Some(body)).await?;
            output::record(&v, as_json);
        }
        TenantCmd::List => {
            let v = admin(socket, Method::GET, "/v1/tenants", None).await?;
            output::tenant_table(&v, as_json);
        }
        TenantCmd::Show { id } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let v = admin(socket, Method::GET, &format!("/v1/tenants/{id}"), None).await?;
            output::record(&v, as_json);
        }
        TenantCmd::Remove { id, shred } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let v = admin(
                socket,
                Method::DELETE,
                &format!("/v1/tenants/{id}?shred={shred}"),
                None,
            )
            .await?;
            output::record(&v, as_json);
        }
        TenantCmd::Restart { id, drain: false } => {
            tenant_action(socket, as_json, &id, "restart").await?
        }
        TenantCmd::Restart { id, drain: true } => {
            tenant_action(socket, as_json, &id, "restart?drain=true").await?
        }
        TenantCmd::Reset { id } => tenant_action(socket, as_json, &id, "reset").await?,
        TenantCmd::Token { id, name, expires } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let expires_in_s = expires
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(usage)?;
            let body = json!({"name": name, "expires_in_s": expires_in_s});
            let v = admin(
                socket,
                Method::POST,
                &format!("/v1/tenants/{id}/tokens"),
                Some(body),
            )
            .await?;
            output::record(&v, as_json);
        }
        TenantCmd::Tls { id, cert, key, off } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let tls = match (cert, key, off) {
                (Some(cert), Some(key), false) => {
                    let read = |p: &Path| {
                        std::fs::read_to_string(p).map_err(|e| {
                            CommandError::Failed(anyhow::anyhow!(
                                "cannot read {}: {e}",
                                p.display()
                            ))
                        })
                    };
                    Some(bulkhead_shared::tls::TlsPem {
                        cert_pem: read(&cert)?,
                        key_pem: read(&key)?,
                    })
                }
                _ => None,
            };
            let body = serde_json::to_value(crate::api::TlsRequest { tls }).expect("serializable");
            let path = format!("/v1/tenants/{id}/tls");
            let v = admin(socket, Method::POST, &path, Some(body)).await?;
            output::record(&v, as_json);
        }
        TenantCmd::Backup { id, out } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let out = std::path::absolute(&out).map_err(usage)?;
            let body = json!({ "out": out });
            let path = format!("/v1/tenants/{id}/backup");
            let v = admin(socket, Method::POST, &path, Some(body)).await?;
            output::record(&v, as_json);
        }
        TenantCmd::RotateKey { id, forget_old } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let body = json!({ "forget_old": forget_old });
            let path = format!("/v1/tenants/{id}/rotate-key");
            let v = admin(socket, Method::POST, &path, Some(body)).await?;
            output::record(&v, as_json);
        }
        TenantCmd::Restore {
            id,
            from,
            accept_other_tenant,
        } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let from = std::path::absolute(&from).map_err(usage)?;
            let body = json!({ "from": from, "accept_other_tenant": accept_other_tenant });
            let path = format!("/v1/tenants/{id}/restore");
            let v = admin(socket, Method::POST, &path, Some(body)).await?;
            if as_json {
                println!("{v}");
            } else {
                output::record(&v["tenant"], false);
                for note in v["notes"].as_array().into_iter().flatten() {
                    eprintln!("note: {}", note.as_str().unwrap_or_default());
                }
            }
        }
        TenantCmd::Tokens { id } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let path = format!("/v1/tenants/{id}/tokens");
            let v = admin(socket, Method::GET, &path, None).await?;
            output::token_table(&v, as_json);
        }
        TenantCmd::RevokeToken { id, token_id } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            if !bulkhead_shared::api_token::is_token_id(&token_id) {
                return Err(usage(format!(
                    "{token_id:?} is not a token id (tok_ and 12 hex digits; see tenant tokens {id})"
                )));
            }
            let path = format!("/v1/tenants/{id}/tokens/{token_id}");
            let v = admin(socket, Method::DELETE, &path, None).await?;
            output::record(&v, as_json);
        }
    }
    Ok(())
}

async fn egress(socket: &Path, as_json: bool, cmd: EgressCmd) -> Result<(), CommandError> {
    let rule = |id: String, target: String| -> Result<Value, CommandError> {
        let id = TenantId::parse(&id).map_err(usage)?;
        let r = crate::api::EgressRule { tenant: id, target };
        r.host_port().map_err(usage)?;
        Ok(serde_json::to_value(r).expect("serializable"))
    };
    let v = match cmd {
        EgressCmd::Add { id, target } => {
            admin(socket, Method::POST, "/v1/egress", Some(rule(id, target)?)).await?
        }
        EgressCmd::Remove { id, target } => {
            admin(
                socket,
                Method::POST,
                "/v1/egress/remove",
                Some(rule(id, target)?),
            )
            .await?
        }
        EgressCmd::List { id } => {
            let path = match id {
                Some(id) => format!("/v1/egress?tenant={}", TenantId::parse(&id).map_err(usage)?),
                None => "/v1/egress".into(),
            };
            let v = admin(socket, Method::GET, &path, None).await?;
            output::egress_table(&v, as_json);
            return Ok(());
        }
        EgressCmd::Check { id, target } => {
            let v = admin(
                socket,
                Method::POST,
                "/v1/egress/check",
                Some(rule(id, target)?),
            )
            .await?;
            output::record(&v, as_json);
            if v["reached"] != true {
                return Err(CommandError::Failed(anyhow::anyhow!(
                    "{}",
                    v["detail"].as_str().unwrap_or("not reached")
                )));
            }
            return Ok(());
        }
    };
    output::record(&v, as_json);
    Ok(())
}

/// `tenant restart [--drain]|reset ID`: a POST to `/v1/tenants/ID/<action>`.
async fn tenant_action(
    socket: &Path,
    as_json: bool,
    id: &str,
    action: &str,
) -> Result<(), CommandError> {
    let id = TenantId::parse(id).map_err(usage)?;
    let v = admin(
        socket,
        Method::POST,
        &format!("/v1/tenants/{id}/{action}"),
        None,
    )
    .await?;
    output::record(&v, as_json);
    Ok(())
}

async fn number(socket: &Path, as_json: bool, cmd: NumberCmd) -> Result<(), CommandError> {
    let v = match cmd {
        NumberCmd::Add { id, number } => {
            let id = TenantId::parse(&id).map_err(usage)?;
            let number = Number::parse(&number).map_err(usage)?;
            admin(
                socket,
                Method::POST,
                "/v1/numbers",
                Some(json!({"tenant": id, "number": number})),
            )
            .await?
        }
        NumberCmd::Remove { number } => {
            let number = Number::parse(&number).map_err(usage)?;
            admin(
                socket,
                Method::DELETE,
                &format!("/v1/numbers/{}", number.as_str().trim_start_matches('+')),
                None,
            )
            .await?
        }
    };
    output::record(&v, as_json);
    Ok(())
}

/// `30d`, `12h`, `15m`, `3600s` or plain seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?}: use a number with s, m, h or d (e.g. 30d)");
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("42"), Ok(42));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
