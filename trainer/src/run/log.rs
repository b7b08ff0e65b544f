//! What a run writes under `runs/<name>/`: TensorBoard event files (scalars, histograms,
//! images), `metrics.jsonl` (a line of scalars per step) and `completions.jsonl` (a few
//! trajectories' text every N steps, their images in `completions/`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use protobuf::RepeatedField;
use tensorboard_proto::event::{Event, SessionLog, SessionLog_SessionStatus};
use tensorboard_proto::summary::{Summary, Summary_Image, Summary_Value};
use tensorboard_rs::summary::{histogram_raw, scalar};
use tensorboard_rs::summary_writer::FileWriter;

/// The run's log.
pub struct RunLog {
    dir: PathBuf,
    events: FileWriter,
    metrics: std::fs::File,
    bins: usize,
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLog").field("dir", &self.dir).finish()
    }
}

impl RunLog {
    /// Open `dir` for a run starting (or resuming) after step `start`: `metrics.jsonl` keeps
    /// and `completions.jsonl` keep only the lines of steps ≤ `start` (a resumed run rewrites the rest), and the event file
    /// begins with TensorBoard's session START at `start + 1`, which makes TensorBoard drop
    /// the earlier attempt's events from that step on.
    ///
    /// # Errors
    /// The directory or files cannot be created.
    pub fn open(dir: &Path, start: u64, bins: usize) -> Result<RunLog> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        let metrics_path = dir.join("metrics.jsonl");
        cut_back(&metrics_path, start)?;
        cut_back(&dir.join("completions.jsonl"), start)?;
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("{}", metrics_path.display()))?;
        let mut events = FileWriter::new(dir);
        let mut session = SessionLog::new();
        session.set_status(SessionLog_SessionStatus::START);
        let mut event = Event::new();
        event.set_session_log(session);
        events.add_event(&event, (start + 1) as usize);
        events.flush();
        Ok(RunLog {
            dir: dir.to_path_buf(),
            events,
            metrics,
            bins,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Log a step's scalars (TensorBoard and `metrics.jsonl`).
    ///
    /// # Errors
    /// `metrics.jsonl` cannot be written.
    pub fn scalars(&mut self, step: u64, values: &BTreeMap<String, f64>) -> Result<()> {
        for (tag, v) in values {
            self.events
                .add_summary(scalar(tag, *v as f32), step as usize);
        }
        let mut line = serde_json::Map::new();
        line.insert("step".into(), step.into());
        for (tag, v) in values {
            line.insert(tag.clone(), serde_json::json!(v));
        }
        writeln!(self.metrics, "{}", serde_json::Value::Object(line))?;
        Ok(())
    }

    /// A histogram of `values`.
    pub fn histogram(&mut self, tag: &str, values: &[f64], step: u64) {
        if values.is_empty() {
            return;
        }
        let (limits, counts) = buckets(values, self.bins);
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = values.iter().sum();
        let sq: f64 = values.iter().map(|v| v * v).sum();
        let h = histogram_raw(
            tag,
            min,
            max,
            values.len() as f64,
            sum,
            sq,
            &limits,
            &counts,
        );
        self.events.add_summary(h, step as usize);
    }

    /// An RGB image (`rgb` is `width × height × 3`, row-major).
    ///
    /// # Errors
    /// The PNG cannot be encoded.
    pub fn image(&mut self, tag: &str, rgb: &image::RgbImage, step: u64) -> Result<()> {
        let mut png = Vec::new();
        rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
        let mut img = Summary_Image::new();
        img.set_height(rgb.height() as i32);
        img.set_width(rgb.width() as i32);
        img.set_colorspace(3);
        img.set_encoded_image_string(png);
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_image(img);
        let mut summary = Summary::new();
        summary.set_value(RepeatedField::from(vec![value]));
        self.events.add_summary(summary, step as usize);
        Ok(())
    }

    /// Append a line to `completions.jsonl`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn completion(&mut self, line: &serde_json::Value) -> Result<()> {
        let path = self.dir.join("completions.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}", path.display()))?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    /// Push what is buffered to disk.
    pub fn flush(&mut self) {
        self.events.flush();
        let _ = self.metrics.flush();
    }
}

/// Keep only the lines of a jsonl log whose `step` is at most `start` (a resumed run writes the
/// later ones again). A missing file is left missing.
fn cut_back(path: &Path, start: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s <= start)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).with_context(|| format!("{}", path.display()))
}

/// TensorBoard histogram buckets: right edges and counts over `bins` equal widths.
fn buckets(values: &[f64], bins: usize) -> (Vec<f64>, Vec<f64>) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let bins = bins.max(1);
    if max <= min {
        return (vec![min], vec![values.len() as f64]);
    }
    let width = (max - min) / bins as f64;
    let limits: Vec<f64> = (1..=bins).map(|i| min + width * i as f64).collect();
    let mut counts = vec![0.0; bins];
    for v in values {
        let i = (((v - min) / width) as usize).min(bins - 1);
        counts[i] += 1.0;
    }
    (limits, counts)
}

/// Images side by side at a common height (the input first, then what the sandbox returned).
pub fn strip(images: &[image::RgbImage], height: u32) -> Option<image::RgbImage> {
    let scaled: Vec<image::RgbImage> = images
        .iter()
        .filter(|i| i.width() > 0 && i.height() > 0)
        .map(|i| {
            let w = (u64::from(i.width()) * u64::from(height) / u64::from(i.height())).max(1);
            image::imageops::resize(i, w as u32, height, image::imageops::FilterType::Triangle)
        })
        .collect();
    if scaled.is_empty() {
        return None;
    }
    let gap = 4;
    let width: u32 =
        scaled.iter().map(|i| i.width()).sum::<u32>() + gap * (scaled.len() as u32 - 1);
    let mut out = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut x = 0;
    for i in &scaled {
        image::imageops::replace(&mut out, i, i64::from(x), 0);
        x += i.width() + gap;
    }
    Some(out)
}
