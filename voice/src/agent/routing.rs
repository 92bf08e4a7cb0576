//! The routing document (docs/interfaces.md): when the business is open, in
//! its own time zone, what a caller hears after hours, and what happens
//! when the tenant's own concurrent-call limit is reached.
//!
//! ```json
//! {"timezone": "America/New_York",
//!  "business_hours": [{"days": ["mon","tue"], "open": "09:00", "close": "17:00"}],
//!  "after_hours": {"action": "take_message", "greeting": "..."},
//!  "max_concurrent_calls": 20,
//!  "overflow": {"action": "busy"}}
//! ```
//!
//! No business hours means always open; no `max_concurrent_calls` means the
//! admin's limit alone applies (a tenant may only lower it).

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::doc::{fail, DocError};
use super::phrases;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingDoc {
    /// An IANA time zone name.
    pub timezone: String,
    pub business_hours: Vec<Hours>,
    pub after_hours: AfterHours,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100_000))]
    pub max_concurrent_calls: Option<u32>,
    pub overflow: Overflow,
}

impl Default for RoutingDoc {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            business_hours: Vec::new(),
            after_hours: AfterHours::default(),
            max_concurrent_calls: None,
            overflow: Overflow::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    pub days: Vec<Day>,
    /// `HH:MM`, local time; `close` may be `24:00`.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub open: String,
    #[schemars(regex(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub close: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn of(w: Weekday) -> Self {
        match w {
            Weekday::Monday => Self::Mon,
            Weekday::Tuesday => Self::Tue,
            Weekday::Wednesday => Self::Wed,
            Weekday::Thursday => Self::Thu,
            Weekday::Friday => Self::Fri,
            Weekday::Saturday => Self::Sat,
            Weekday::Sunday => Self::Sun,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AfterHours {
    pub action: AfterHoursAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AfterHoursAction {
    #[default]
    TakeMessage,
    Escalate,
    /// The agent answers as usual, with the after-hours greeting.
    Answer,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Overflow {
    pub action: OverflowAction,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OverflowAction {
    /// `486 Busy Here`: the carrier plays busy or tries its next route.
    #[default]
    Busy,
    Escalate,
    TakeMessage,
}

/// How a new call starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Open,
    AfterHours {
        action: AfterHoursAction,
        greeting: Option<String>,
        /// The local time that decided it, for the transcript (`Fri 18:05 America/New_York`).
        local: String,
    },
    Overflow {
        action: OverflowAction,
        limit: u32,
    },
}

/// How a call starts, decided by its [`Route`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opening {
    /// Said instead of the agent document's greeting.
    pub greeting: Option<String>,
    pub then: Then,
    /// Why, for the transcript.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Then {
    #[default]
    Converse,
    TakeMessage,
    Transfer {
        reason: String,
    },
}

impl Opening {
    /// The opening for a call routed by `route`, for an agent speaking
    /// `language`. (A `busy` overflow never reaches the agent: the call is
    /// refused.)
    pub fn for_route(route: &Route, language: &str) -> Self {
        let say = phrases::for_language(language);
        match route {
            Route::Open => Self::default(),
            Route::AfterHours {
                action,
                greeting,
                local,
            } => {
                let note = Some(format!("after hours ({local}): {}", action.as_str()));
                match action {
                    AfterHoursAction::TakeMessage => Self {
                        greeting: Some(greeting.clone().unwrap_or_else(|| say.closed.into())),
                        then: Then::TakeMessage,
                        note,
                    },
                    AfterHoursAction::Escalate => Self {
                        greeting: greeting.clone(),
                        then: Then::Transfer {
                            reason: "after hours".into(),
                        },
                        note,
                    },
                    AfterHoursAction::Answer => Self {
                        greeting: greeting.clone(),
                        then: Then::Converse,
                        note,
                    },
                }
            }
            Route::Overflow { action, limit } => {
                let note = Some(format!(
                    "overflow: {limit} calls in progress (routing max_concurrent_calls): {}",
                    action.as_str()
                ));
                match action {
                    OverflowAction::TakeMessage => Self {
                        greeting: Some(format!("{} {}", say.lines_busy, say.leave_message)),
                        then: Then::TakeMessage,
                        note,
                    },
                    OverflowAction::Escalate | OverflowAction::Busy => Self {
                        greeting: Some(say.lines_busy.into()),
                        then: Then::Transfer {
                            reason: "all lines busy".into(),
                        },
                        note,
                    },
                }
            }
        }
    }
}

impl AfterHoursAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TakeMessage => "take_message",
            Self::Escalate => "escalate",
            Self::Answer => "answer",
        }
    }
}

impl OverflowAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Escalate => "escalate",
            Self::TakeMessage => "take_message",
        }
    }
}

const MAX_HOURS: usize = 50;
const MAX_GREETING: usize = 2000;

/// Minutes since local midnight for `HH:MM` (00:00 to 24:00).
fn minutes(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    let total = h * 60 + m;
    (m < 60 && total <= 24 * 60).then_some(total)
}

impl RoutingDoc {
    pub fn from_json(body: &[u8]) -> Result<Self, DocError> {
        let doc: Self = super::doc::object_from_json(body)?;
        doc.validate()?;
        Ok(doc)
    }

    pub fn validate(&self) -> Result<(), DocError> {
        if TimeZone::get(&self.timezone).is_err() {
            return fail(
                "timezone",
                "an IANA time zone name such as America/New_York",
            );
        }
        if self.business_hours.len() > MAX_HOURS {
            return fail("business_hours", "at most 50 entries");
        }
        for (i, h) in self.business_hours.iter().enumerate() {
            if h.days.is_empty() {
                return fail(format!("business_hours[{i}].days"), "name at least one day");
            }
            let Some(open) = minutes(&h.open) else {
                return fail(format!("business_hours[{i}].open"), "HH:MM, 00:00 to 24:00");
            };
            let Some(close) = minutes(&h.close) else {
                return fail(
                    format!("business_hours[{i}].close"),
                    "HH:MM, 00:00 to 24:00",
                );
            };
            if close <= open {
                return fail(
                    format!("business_hours[{i}].close"),
                    "must be after open (for hours past midnight, add a second entry for the next day)",
                );
            }
        }
        if self
            .after_hours
            .greeting
            .as_ref()
            .is_some_and(|g| g.len() > MAX_GREETING)
        {
            return fail("after_hours.greeting", "at most 2000 bytes");
        }
        if self.max_concurrent_calls.is_some_and(|m| m > 100_000) {
            return fail("max_concurrent_calls", "at most 100000");
        }
        Ok(())
    }

    /// Whether `at` falls in business hours (always, when none are set).
    pub fn is_open(&self, at: Timestamp) -> bool {
        if self.business_hours.is_empty() {
            return true;
        }
        let Ok(tz) = TimeZone::get(&self.timezone) else {
            return true; // validated on the way in; never closed by accident
        };
        let local = at.to_zoned(tz);
        let (day, now) = (
            Day::of(local.weekday()),
            u32::from(local.hour().unsigned_abs()) * 60 + u32::from(local.minute().unsigned_abs()),
        );
        self.business_hours.iter().any(|h| {
            let (open, close) = (minutes(&h.open), minutes(&h.close));
            h.days.contains(&day)
                && open.is_some_and(|o| o <= now)
                && close.is_some_and(|c| now < c)
        })
    }

    /// How a call arriving at `at` starts, with `active` calls already in progress.
    pub fn route(&self, at: Timestamp, active: usize) -> Route {
        if let Some(limit) = self.max_concurrent_calls {
            if active >= limit as usize {
                return Route::Overflow {
                    action: self.overflow.action,
                    limit,
                };
            }
        }
        if self.is_open(at) {
            return Route::Open;
        }
        let local = TimeZone::get(&self.timezone)
            .map(|tz| at.to_zoned(tz).strftime("%a %H:%M").to_string())
            .unwrap_or_default();
        Route::AfterHours {
            action: self.after_hours.action,
            greeting: self.after_hours.greeting.clone(),
            local: format!("{local} {}", self.timezone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"timezone": "America/New_York",
 "business_hours": [{"days": ["mon","tue","wed","thu","fri"], "open": "09:00", "close": "17:00"}],
 "after_hours": {"action": "take_message", "greeting": "We are closed."},
 "max_concurrent_calls": 2,
 "overflow": {"action": "escalate"}}"#;

    fn at(utc: &str) -> Timestamp {
        utc.parse().unwrap()
    }

    #[test]
    fn hours_are_read_in_the_tenants_time_zone_across_dst() {
        let doc = RoutingDoc::from_json(EXAMPLE.as_bytes()).unwrap();
        // Friday 2026-11-27, New York is UTC-5 (EST): 09:00 local is 14:00 UTC.
        assert!(!doc.is_open(at("2026-11-27T13:59:00Z")));
        assert!(doc.is_open(at("2026-11-27T14:00:00Z")));
        assert!(doc.is_open(at("2026-11-27T21:59:00Z")));
        assert!(!doc.is_open(at("2026-11-27T22:00:00Z")), "17:00 is closed");
        // Friday 2026-07-10, UTC-4 (EDT): 09:00 local is 13:00 UTC.
        assert!(doc.is_open(at("2026-07-10T13:00:00Z")));
        assert!(!doc.is_open(at("2026-07-10T21:00:00Z")));
        // Saturday.
        assert!(!doc.is_open(at("2026-11-28T15:00:00Z")));
        // Friday 23:00 UTC is still Friday 18:00 local, not Saturday.
        let Route::AfterHours { local, .. } = doc.route(at("2026-11-27T23:00:00Z"), 0) else {
            panic!("closed")
        };
        assert_eq!(local, "Fri 18:00 America/New_York");
    }

    #[test]
    fn the_limit_comes_before_the_hours() {
        let doc = RoutingDoc::from_json(EXAMPLE.as_bytes()).unwrap();
        let open = at("2026-11-27T15:00:00Z");
        assert_eq!(doc.route(open, 1), Route::Open);
        assert_eq!(
            doc.route(open, 2),
            Route::Overflow {
                action: OverflowAction::Escalate,
                limit: 2
            }
        );
        assert!(matches!(
            doc.route(at("2026-11-28T15:00:00Z"), 0),
            Route::AfterHours { action: AfterHoursAction::TakeMessage, greeting: Some(g), .. } if g == "We are closed."
        ));
        // No hours: always open; no limit: never overflows here.
        let always = RoutingDoc::from_json(b"{}").unwrap();
        assert_eq!(
            always.route(at("2026-11-28T03:00:00Z"), 10_000),
            Route::Open
        );
    }

    #[test]
    fn each_route_opens_the_call_its_way() {
        let closed = Route::AfterHours {
            action: AfterHoursAction::TakeMessage,
            greeting: None,
            local: "Sat 10:00 UTC".into(),
        };
        let o = Opening::for_route(&closed, "en-US");
        assert_eq!(o.then, Then::TakeMessage);
        assert!(o.greeting.unwrap().contains("leave a message"));
        assert_eq!(
            o.note.as_deref(),
            Some("after hours (Sat 10:00 UTC): take_message")
        );
        let busy = Route::Overflow {
            action: OverflowAction::Escalate,
            limit: 3,
        };
        assert!(matches!(
            Opening::for_route(&busy, "en").then,
            Then::Transfer { .. }
        ));
        assert_eq!(Opening::for_route(&Route::Open, "en"), Opening::default());
        assert_eq!(
            Opening::for_route(&closed, "es-ES").greeting.as_deref(),
            Some("Ahora estamos cerrados. Deje su mensaje después de esta frase.")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = |body: &str| RoutingDoc::from_json(body.as_bytes()).unwrap_err().field;
        assert_eq!(err(r#"{"timezone": "Mars/Olympus"}"#), "timezone");
        assert_eq!(err(r#"{"timzone": "UTC"}"#), "timzone");
        assert_eq!(
            err(r#"{"business_hours": [{"days": ["mon"], "open": "9:00", "close": "17:00"}]}"#),
            "business_hours[0].open"
        );
        assert_eq!(
            err(r#"{"business_hours": [{"days": ["mon"], "open": "18:00", "close": "09:00"}]}"#),
            "business_hours[0].close"
        );
        assert_eq!(
            err(r#"{"business_hours": [{"days": [], "open": "09:00", "close": "17:00"}]}"#),
            "business_hours[0].days"
        );
        assert_eq!(
            err(r#"{"business_hours": [{"days": ["mon"], "open": "09:00", "close": "24:01"}]}"#),
            "business_hours[0].close"
        );
        // Serde's own errors (an unknown day) name no field but say what is wrong.
        assert!(RoutingDoc::from_json(br#"{"overflow": {"action": "voicemail"}}"#).is_err());
        let full_day =
            r#"{"business_hours": [{"days": ["sun"], "open": "00:00", "close": "24:00"}]}"#;
        assert!(RoutingDoc::from_json(full_day.as_bytes()).is_ok());
    }
}
