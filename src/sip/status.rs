//! Status codes (RFC 3261 §21) and every rejection the bridge sends, each with
//! its code and the headers that code calls for, in one place: a caller of
//! [`Reject::code`] and [`Reject::headers`] cannot forget the Allow of a 405, the
//! Min-SE of a 422 or the Retry-After of an overloaded 503.

/// Methods the bridge serves (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";

/// The reason phrase of a status code.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "",
    }
}

/// A request refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reject {
    /// 302 + Contact: the room is held by another node of the cluster
    Moved(String),
    /// 400, with the reason in a Warning
    BadRequest(String),
    /// 403 (a locked room nobody can prove to moderate)
    Forbidden(&'static str),
    /// 404: no such room (only when rooms are not hidden)
    NotFound,
    /// 405 + Allow
    MethodNotAllowed,
    /// 406: the request's Accept refuses SDP (§21.4.7)
    NotAcceptable,
    /// 415 + Accept: a body that is not SDP
    UnsupportedMediaType,
    /// 416: not a sip: or sips: Request-URI (§8.2.2.1)
    UnsupportedUriScheme,
    /// 420 + Unsupported: a Require we do not support (§8.2.2.3)
    BadExtension(String),
    /// 422 + Min-SE: a session interval below ours (RFC 4028 §6)
    IntervalTooSmall(u32),
    /// 481: no such dialog or transaction
    NoSuchCall,
    /// 486, with the reason in a Warning (the room is full)
    BusyHere(&'static str),
    /// 487: the INVITE was cancelled
    RequestTerminated,
    /// 488 + Warning 304: no media in the offer we can take
    NotAcceptableHere,
    /// 500: a lower CSeq (§12.2.2), or an INVITE while another is pending
    /// (§14.2), which may be retried after this many seconds
    ServerError(Option<u32>),
    /// 501 + Allow: a method we do not know
    NotImplemented,
    /// 503: shutting down, overloaded, or out of media ports; retry after this
    /// many seconds
    Unavailable(Option<u32>),
}

impl Reject {
    /// Its status code.
    pub fn code(&self) -> u16 {
        match self {
            Reject::Moved(_) => 302,
            Reject::BadRequest(_) => 400,
            Reject::Forbidden(_) => 403,
            Reject::NotFound => 404,
            Reject::MethodNotAllowed => 405,
            Reject::NotAcceptable => 406,
            Reject::UnsupportedMediaType => 415,
            Reject::UnsupportedUriScheme => 416,
            Reject::BadExtension(_) => 420,
            Reject::IntervalTooSmall(_) => 422,
            Reject::NoSuchCall => 481,
            Reject::BusyHere(_) => 486,
            Reject::RequestTerminated => 487,
            Reject::NotAcceptableHere => 488,
            Reject::ServerError(_) => 500,
            Reject::NotImplemented => 501,
            Reject::Unavailable(_) => 503,
        }
    }

    /// The headers its response carries.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let warning = |text: &str| ("Warning", format!("399 caucus \"{text}\""));
        match self {
            Reject::Moved(contact) => vec![("Contact", contact.clone())],
            Reject::BadRequest(why) => vec![warning(why)],
            Reject::Forbidden(why) | Reject::BusyHere(why) => vec![warning(why)],
            Reject::MethodNotAllowed | Reject::NotImplemented => vec![("Allow", ALLOW.into())],
            Reject::NotAcceptable => vec![("Accept", "application/sdp".into())],
            Reject::UnsupportedMediaType => vec![
                warning("only application/sdp"),
                ("Accept", "application/sdp".into()),
            ],
            Reject::BadExtension(options) => vec![("Unsupported", options.clone())],
            Reject::IntervalTooSmall(min) => vec![("Min-SE", min.to_string())],
            Reject::NotAcceptableHere => {
                vec![("Warning", "304 caucus \"Media type not available\"".into())]
            }
            Reject::ServerError(Some(s)) | Reject::Unavailable(Some(s)) => {
                vec![("Retry-After", s.to_string())]
            }
            Reject::NotFound
            | Reject::UnsupportedUriScheme
            | Reject::NoSuchCall
            | Reject::RequestTerminated
            | Reject::ServerError(None)
            | Reject::Unavailable(None) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rejection_carries_what_its_code_calls_for() {
        assert_eq!(
            Reject::MethodNotAllowed.headers(),
            vec![("Allow", ALLOW.to_string())]
        );
        assert_eq!(
            Reject::IntervalTooSmall(90).headers(),
            vec![("Min-SE", "90".into())]
        );
        assert_eq!(Reject::Unavailable(Some(5)).code(), 503);
        assert_eq!(
            Reject::Unavailable(Some(5)).headers(),
            vec![("Retry-After", "5".into())]
        );
        for r in [
            Reject::NotFound,
            Reject::NoSuchCall,
            Reject::RequestTerminated,
        ] {
            assert!(!reason(r.code()).is_empty(), "{r:?}");
        }
    }
}
