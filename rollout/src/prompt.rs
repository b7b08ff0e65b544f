//! The prompt in the reference's turn structure: a system message that offers the sandbox,
//! the user's image(s) and question followed by the image's path and size and the required
//! output format. (Wording of our own; the structure is Thyme's / V-Thinker's.)

use policy::{Message, Part, Role};

/// The system message: think step by step, and write Python to edit or draw on the image.
pub const SYSTEM: &str = "You are a helpful assistant that solves visual problems step by step. \
When it helps, write Python to process or draw on the image (crop, zoom, rotate, enhance \
contrast, draw auxiliary lines, mark points or regions) or to calculate. Wrap the code as \
<code>\n```python\n...\n```\n</code>. It runs in a sandbox; the image it saves or the result \
it prints comes back inside <sandbox_output></sandbox_output>. End the code by printing the \
path of the processed image or the result.";

/// The format instruction after the question.
pub const FORMAT: &str = "Output the thinking process in <think> </think> and the final answer \
in <answer> </answer>.";

/// An image of the prompt: its processor grid, the path the code should open, its size.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptImage {
    /// (t, h, w) in patches.
    pub grid_thw: [usize; 3],
    /// The path shown to the policy.
    pub path: String,
    /// Width and height in pixels.
    pub size: (u32, u32),
}

/// The system and user messages for a question about images.
pub fn messages(question: &str, images: &[PromptImage]) -> Vec<Message> {
    let mut parts: Vec<Part> = images.iter().map(|i| Part::Image(i.grid_thw)).collect();
    let mut text = format!("{question}\n");
    for i in images {
        text.push_str(&format!(
            "User Image Path: \"{}\"\nUser Image Size: \"{}x{}\"\n",
            i.path, i.size.0, i.size.1
        ));
    }
    text.push_str(FORMAT);
    parts.push(Part::Text(text));
    vec![
        Message::text(Role::System, SYSTEM),
        Message {
            role: Role::User,
            parts,
        },
    ]
}

/// The messages of a dataset row written in the Thyme / ms-swift format: its own system text
/// (or [`SYSTEM`]) and its user text, whose `<image>` tags take the images in order (images
/// without a tag go first) and whose `User Image Path: "…"` lines are rewritten to the paths
/// the sandbox shows (the data's paths are the authors' machines').
pub fn messages_from_row(system: Option<&str>, user: &str, images: &[PromptImage]) -> Vec<Message> {
    let tags = user.matches("<image>").count();
    let untagged = images.len().saturating_sub(tags);
    let mut parts: Vec<Part> = images[..untagged]
        .iter()
        .map(|i| Part::Image(i.grid_thw))
        .collect();
    let mut next = untagged;
    let mut path_line = 0;
    let text = user
        .lines()
        .map(
            |line| match line.trim_start().strip_prefix("User Image Path:") {
                Some(_) if path_line < images.len() => {
                    path_line += 1;
                    format!("User Image Path: \"{}\"", images[path_line - 1].path)
                }
                _ => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    for (k, piece) in text.split("<image>").enumerate() {
        if k > 0 && next < images.len() {
            parts.push(Part::Image(images[next].grid_thw));
            next += 1;
        }
        if !piece.is_empty() {
            parts.push(Part::Text(piece.to_string()));
        }
    }
    vec![
        Message::text(Role::System, system.unwrap_or(SYSTEM)),
        Message {
            role: Role::User,
            parts,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_messages_get_its_images_at_the_tags_and_the_local_path() {
        let img = |g: usize, path: &str| PromptImage {
            grid_thw: [1, g, g],
            path: path.into(),
            size: (8, 8),
        };
        let images = [img(2, "/input/a.png"), img(4, "/input/b.png")];
        let user = "<image>Compare.\nUser Image Path: \"/mnt/data/a.png\"\nok";
        let m = messages_from_row(Some("S"), user, &images);
        assert_eq!(m[0], Message::text(Role::System, "S"));
        // One tag for two images: the first image goes in front (as ms-swift prepends the
        // missing tags), the second takes the tag.
        assert_eq!(
            m[1].parts,
            [
                Part::Image([1, 2, 2]),
                Part::Image([1, 4, 4]),
                Part::Text("Compare.\nUser Image Path: \"/input/a.png\"\nok".into()),
            ]
        );
        assert_eq!(
            messages_from_row(None, "q", &[])[0],
            Message::text(Role::System, SYSTEM)
        );
    }
}
