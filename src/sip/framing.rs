//! Stream framing for SIP over TCP (RFC 3261 §18.3): a byte stream is cut into
//! messages by the empty line after the headers and the Content-Length that must be
//! present. Handles several messages per segment, messages split over segments and
//! CRLF keep-alives (RFC 5626 §3.5.1). Bounded: a frame larger than
//! [`super::message::MAX_MESSAGE`] is an error and the connection closes.

use super::message::MAX_MESSAGE;

/// Why a stream can no longer be framed; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// header section or body exceeds the limit
    #[error("message too large")]
    TooLarge,
    /// Content-Length missing or not a non-negative integer
    #[error("missing or invalid Content-Length on a stream")]
    ContentLength,
}

/// Accumulates bytes from one connection and yields whole messages.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

impl StreamFramer {
    /// Add bytes as they arrive.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        // keep-alive CRLFs between messages
        let skip = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.buf.drain(..skip);
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() > MAX_MESSAGE {
                return Err(FramingError::TooLarge);
            }
            return Ok(None);
        };
        let head = &self.buf[..end];
        let body_len = content_length(head)?;
        let total = end + 4 + body_len;
        if total > MAX_MESSAGE {
            return Err(FramingError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        Ok(Some(msg))
    }
}

impl StreamFramer {
    /// The header section buffered when framing failed, so that the request can
    /// still be answered (400) before the connection closes.
    pub fn pending_head(&self) -> Option<Vec<u8>> {
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        Some(self.buf[..end + 4].to_vec())
    }
}

fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = std::str::from_utf8(line[colon + 1..].trim_ascii())
                .map_err(|_| FramingError::ContentLength)?;
            return v.parse().map_err(|_| FramingError::ContentLength);
        }
    }
    Err(FramingError::ContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_and_partial() {
        let a = b"OPTIONS sip:x SIP/2.0\r\nl: 2\r\n\r\nab";
        let b = b"OPTIONS sip:y SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        let mut all = Vec::new();
        all.extend_from_slice(b"\r\n\r\n");
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        let mut f = StreamFramer::default();
        // one byte at a time
        let mut got = Vec::new();
        for byte in &all {
            f.push(std::slice::from_ref(byte));
            while let Some(m) = f.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![a.to_vec(), b.to_vec()]);
        // all at once
        let mut f = StreamFramer::default();
        f.push(&all);
        assert_eq!(f.next_message().unwrap().unwrap(), a.to_vec());
        assert_eq!(f.next_message().unwrap().unwrap(), b.to_vec());
        assert_eq!(f.next_message().unwrap(), None);
    }

    #[test]
    fn bad_length_closes() {
        let mut f = StreamFramer::default();
        f.push(b"OPTIONS sip:x SIP/2.0\r\nl: -5\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::ContentLength));
        let mut f = StreamFramer::default();
        f.push(b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::ContentLength));
    }
}
