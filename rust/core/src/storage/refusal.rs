//! What a store's error says, for the errors the client does not sort itself: whether the
//! store refused the request, and its answer in a few words rather than an XML body.

/// Did the store refuse the request (HTTP 401 or 403), as an error message says?
pub(super) fn refused(e: &object_store::Error) -> bool {
    let mut at: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = at {
        let text = err.to_string();
        if text.contains("status code: 403") || text.contains("status code: 401") {
            return true;
        }
        at = err.source();
    }
    false
}

/// The store's answer in a few words: the status, and the code and message of an S3-style
/// XML error body, instead of the body itself.
pub(super) fn store_answer(text: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    let Some(xml) = text.find("<?xml").or_else(|| text.find("<Error>")) else {
        return text.trim().to_string();
    };
    let before = text[..xml].trim().trim_end_matches(':').trim();
    let status = before
        .rfind("status code: ")
        .map_or(before, |i| &before[i + "status code: ".len()..]);
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{status} {c}: {m}"),
        (Some(c), None) => format!("{status} {c}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_told_in_a_few_words() {
        let text = "Error performing list request: Server returned non-2xx status code: \
                    403 Forbidden: <?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code>\
                    <Message>No such key.</Message></Error>";
        assert_eq!(
            store_answer(text),
            "403 Forbidden InvalidAccessKeyId: No such key."
        );
        assert_eq!(store_answer("timed out"), "timed out");
    }
}
