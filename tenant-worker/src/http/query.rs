//! Query parameters of `GET /v1/calls`, validated with the failing field named.

/// Default and largest page size (INTERFACES.md).
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, PartialEq, Eq)]
pub struct CallQuery {
    pub limit: u32,
    pub before_seq: Option<i64>,
}

impl CallQuery {
    /// Parses `limit` and `cursor`. Filters this build does not implement
    /// are refused rather than silently ignored.
    pub fn parse(query: &str) -> Result<Self, (String, String)> {
        let mut q = Self {
            limit: DEFAULT_LIMIT,
            before_seq: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "limit" => {
                    q.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or((
                            "limit".to_string(),
                            format!("limit must be 1 to {MAX_LIMIT}"),
                        ))?;
                }
                "cursor" => {
                    q.before_seq = Some(v.parse().map_err(|_| {
                        (
                            "cursor".to_string(),
                            "cursor is not one this API issued".to_string(),
                        )
                    })?);
                }
                "since" | "until" | "number" | "outcome" => {
                    return Err((
                        k.to_string(),
                        format!("the {k} filter is not implemented yet"),
                    ));
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        assert_eq!(
            CallQuery::parse("").unwrap(),
            CallQuery {
                limit: 50,
                before_seq: None
            }
        );
        assert_eq!(
            CallQuery::parse("limit=2&cursor=17").unwrap(),
            CallQuery {
                limit: 2,
                before_seq: Some(17)
            }
        );
        assert_eq!(CallQuery::parse("limit=0").unwrap_err().0, "limit");
        assert_eq!(CallQuery::parse("limit=201").unwrap_err().0, "limit");
        assert_eq!(CallQuery::parse("cursor=x").unwrap_err().0, "cursor");
    }
}
