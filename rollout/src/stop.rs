//! Stop strings matched on the decoded text of a chunk as it grows, across token boundaries
//! (a stop string may end inside a token or span several); the chunk keeps its stop string.

use policy::{ChatTokenizer, TextStream, tokenizer::TokenizerError};

/// The stop strings of a rollout; Thyme's are `<code>`, `</code>`, `</answer>`,
/// `<|im_end|>` and `<|endoftext|>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopStrings {
    strings: Vec<String>,
    longest: usize,
}

impl StopStrings {
    /// Thyme's stop strings.
    pub fn thyme() -> StopStrings {
        StopStrings::new([
            "<code>",
            "</code>",
            "</answer>",
            "<|im_end|>",
            "<|endoftext|>",
        ])
    }

    /// These strings (empty ones are ignored).
    pub fn new<S: Into<String>>(strings: impl IntoIterator<Item = S>) -> StopStrings {
        let strings: Vec<String> = strings
            .into_iter()
            .map(Into::into)
            .filter(|s| !s.is_empty())
            .collect();
        let longest = strings.iter().map(String::len).max().unwrap_or(0);
        StopStrings { strings, longest }
    }

    /// The strings.
    pub fn strings(&self) -> &[String] {
        &self.strings
    }
}

/// The decoded text of a chunk being generated.
#[derive(Debug, Clone, Default)]
pub struct ChunkText {
    stream: TextStream,
    text: String,
    /// Text before this byte offset has been searched and holds no stop string.
    searched: usize,
}

impl ChunkText {
    /// An empty chunk.
    pub fn new() -> ChunkText {
        ChunkText::default()
    }

    /// The text decoded so far (bytes of a character still incomplete are not in it yet).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Append a token; the stop string it completes, if any (the earliest in the text when
    /// several do).
    ///
    /// # Errors
    /// The tokenizer's own failures.
    pub fn push<'s>(
        &mut self,
        tokenizer: &ChatTokenizer,
        stops: &'s StopStrings,
        id: u32,
    ) -> Result<Option<&'s str>, TokenizerError> {
        let Some(new) = tokenizer.step(&mut self.stream, id)? else {
            return Ok(None);
        };
        self.text.push_str(&new);
        // A match must end in the new text, so it starts at most `longest - 1` bytes before it.
        let mut from = self.searched.min(self.text.len());
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let window = &self.text[from..];
        let found = stops
            .strings
            .iter()
            .filter_map(|s| window.find(s.as_str()).map(|at| (at, s.as_str())))
            .min_by_key(|&(at, _)| at)
            .map(|(_, s)| s);
        self.searched = self
            .text
            .len()
            .saturating_sub(stops.longest.saturating_sub(1));
        Ok(found)
    }
}
