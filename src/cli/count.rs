//! `esxi-tweet count`: a text's weighted length as X counts it, and whether X accepts it.

use super::{CountArgs, check_characters, print, read_text};
use crate::error::Error;
use crate::twitter_text::{self, MAX_WEIGHTED_LENGTH};

pub(super) fn run(args: CountArgs) -> Result<(), Error> {
    let text = read_text(args.text.as_deref())?;
    let parsed = twitter_text::parse_tweet(&text);
    let length = parsed.weighted_length;
    // The verdict in a word for the count line, and the full reason for the error line.
    let problem = if text.trim().is_empty() {
        Some(("empty", "nothing to post: the text is empty".to_string()))
    } else if let Err(e) = check_characters(&text) {
        Some(("refused", e.to_string()))
    } else if !parsed.valid {
        Some((
            "too long",
            format!(
                "text too long: {length}/{MAX_WEIGHTED_LENGTH} weighted characters; shorten it, or post --fit"
            ),
        ))
    } else {
        None
    };
    if args.json {
        let value = serde_json::json!({
            "weighted_length": length,
            "valid": problem.is_none(),
            "permillage": parsed.permillage,
        });
        print(&format!("{value}\n"))?;
    } else {
        let verdict = problem.as_ref().map_or("fits", |(word, _)| word);
        print(&format!("{length}/{MAX_WEIGHTED_LENGTH} {verdict}\n"))?;
    }
    match problem {
        Some((_, why)) => Err(Error::TextRejected(why)),
        None => Ok(()),
    }
}
