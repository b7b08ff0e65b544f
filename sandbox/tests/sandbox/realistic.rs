//! Realistic Thyme / V-Thinker snippets, each checked for its actual output: the pixels drawn
//! where asked, the numbers printed.

use image::Rgb;
use sandbox::{Execution, SandboxOutput};

use crate::common::{SANDBOX, SANDBOX_HEAVY_IMPORTS, input_image, scratch};

/// Run a policy block (with Thyme's pre-processing) over the standard input image.
fn block(code: &str) -> (Execution, tempfile::TempDir, sandbox::Session) {
    block_on(&SANDBOX, code)
}

/// [`block`] in a given sandbox.
fn block_on(
    sandbox: &sandbox::Sandbox,
    code: &str,
) -> (Execution, tempfile::TempDir, sandbox::Session) {
    let dir = scratch();
    let img = input_image(dir.path(), "chart.png");
    let mut s = sandbox.session("traj-7", &[img]).expect("session");
    let run = s.run_block(&format!("<code>\n```python\n{code}\n```\n</code>"));
    assert!(run.error.is_none(), "{run:#?}");
    (run, dir, s)
}

fn only_image(run: &Execution) -> image::RgbImage {
    assert_eq!(run.images.len(), 1, "{run:#?}");
    image::open(&run.images[0].host_path)
        .expect("decode output")
        .to_rgb8()
}

#[test]
fn crop_and_save() {
    // Thyme data's output prefix, redirected to the call's output directory.
    let (run, _d, _s) = block(
        "img = Image.open(image_path)\n\
         x1, y1, x2, y2 = 30, 20, 150, 100\n\
         img.crop((x1, y1, x2, y2)).save('/mnt/data/temp_processed_images/crop.png')\n\
         print('/mnt/data/temp_processed_images/crop.png')",
    );
    let out = only_image(&run);
    assert_eq!(out.dimensions(), (120, 80));
    assert_eq!(*out.get_pixel(5, 5), Rgb([255, 255, 255])); // (35, 25) in the input
    assert_eq!(*out.get_pixel(20, 20), Rgb([0, 0, 0])); // (50, 40): inside the black box
    assert!(run.images[0].guest_path.starts_with("/output/call_1/"));
}

#[test]
fn crop_box_out_of_bounds_is_clamped_with_a_64px_minimum() {
    let (run, _d, _s) = block(
        "img = Image.open(image_path)\n\
         crop_box = (300, 190, 330, 400)\n\
         img.crop(crop_box).save('./temp_images/corner.png')",
    );
    let out = only_image(&run);
    assert_eq!(
        out.dimensions(),
        (64, 64),
        "clamped to the 320x200 image with 64 px sides"
    );
}

#[test]
fn rotate() {
    let (run, _d, _s) = block(
        "img = Image.open(image_path).rotate(90, expand=True)\n\
         processed_path = 'rotated.png'\nimg.save(processed_path)",
    );
    let out = only_image(&run);
    assert_eq!(out.dimensions(), (200, 320));
}

#[test]
fn contrast() {
    let (run, _d, _s) = block(
        "img = Image.open(image_path).convert('RGB')\n\
         img = Image.blend(img, Image.new('RGB', img.size, (128, 128, 128)), 0.5)\n\
         img = ImageEnhance.Contrast(img).enhance(2.0)\n\
         img.save('contrast.png')",
    );
    let out = only_image(&run);
    // Blending to grey maps black to 64 and white to 191; PIL's contrast then doubles every
    // pixel's distance from the mean grey (about 179 here): black to 0, white to about 203.
    let black = out.get_pixel(60, 50)[0];
    let white = out.get_pixel(5, 5)[0];
    assert_eq!(black, 0);
    assert!((198..=208).contains(&white), "white {white}");
}

#[test]
fn draw_auxiliary_lines_and_points() {
    let (run, _d, _s) = block(
        "img = Image.open(image_path).convert('RGB')\n\
         draw = ImageDraw.Draw(img)\n\
         draw.line([(0, 150), (319, 150)], fill=(0, 0, 255), width=3)\n\
         for (x, y) in [(250, 40), (280, 60)]:\n\
         \x20   draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(0, 200, 0))\n\
         img.save('aux.png')\nprint('saved aux.png')",
    );
    let out = only_image(&run);
    assert_eq!(*out.get_pixel(160, 150), Rgb([0, 0, 255]));
    assert_eq!(*out.get_pixel(10, 151), Rgb([0, 0, 255]));
    assert_eq!(*out.get_pixel(250, 40), Rgb([0, 200, 0]));
    assert_eq!(*out.get_pixel(280, 60), Rgb([0, 200, 0]));
    assert_eq!(
        *out.get_pixel(160, 140),
        Rgb([255, 255, 255]),
        "nothing drawn off the line"
    );
}

#[test]
fn matplotlib_figure_saved_to_the_output_dir() {
    let (run, _d, _s) = block_on(
        &SANDBOX_HEAVY_IMPORTS,
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n\
         fig, ax = plt.subplots(figsize=(4, 3), dpi=50)\n\
         ax.plot([0, 1, 2], [2, 0, 1])\nfig.savefig(os.path.join(output_dir, 'plot.png'))\n\
         print('plotted')",
    );
    let out = only_image(&run);
    assert_eq!(out.dimensions(), (200, 150));
    assert!(
        out.pixels().any(|p| p[2] > 150 && p[0] < 100),
        "the default blue line is drawn"
    );
}

#[test]
fn numpy_computation_prints_the_number() {
    let (run, _d, _s) = block(
        "a = np.asarray(Image.open(image_path).convert('L'), dtype=np.float64)\n\
         dark = int((a < 128).sum())\nprint(dark)",
    );
    // 100x60 black pixels; the red block has luminance 76, also dark.
    assert_eq!(run.stdout.trim(), (100 * 60 + 10 * 10).to_string());
    assert_eq!(
        run.sandbox_output("traj-7"),
        SandboxOutput::Text("6100".into())
    );
}

#[test]
fn dangling_image_path_literal_points_at_the_input() {
    let (run, _d, _s) = block(
        "image_path = '/mnt/data/images/question_17.png'\nprint(Image.open(image_path).size)",
    );
    assert_eq!(run.stdout.trim(), "(320, 200)");
}

#[test]
fn thyme_code_fence_variants_run() {
    let dir = scratch();
    let img = input_image(dir.path(), "chart.png");
    let mut s = SANDBOX.session("fences", &[img]).expect("session");
    let run = s.run_block("<code>'''python\nprint(1 + 1)\n'''</code>");
    assert_eq!(run.stdout.trim(), "2", "{run:#?}");
    // A first line pasted right after the tag, the rest indented.
    let run = s.run_block(
        "<code>```python\nw, h = Image.open(image_path).size\n    print(w * h)\n```</code>",
    );
    assert_eq!(run.stdout.trim(), "64000", "{run:#?}");
}

#[test]
fn result_rules_follow_thyme() {
    let dir = scratch();
    let img = input_image(dir.path(), "chart.png");
    let mut s = SANDBOX.session("rules", &[img]).expect("session");
    let run = s.run_block("<code>```python\nx = 1\n```</code>");
    assert_eq!(
        run.sandbox_output("rules"),
        SandboxOutput::Error("Sandbox for rules: No output captured.".into())
    );
    let run = s.run_block("<code>```python\n```</code>");
    assert!(run.sandbox_output("rules").is_error());
    let run = s.run_block("<code>```python\nprint('text wins over nothing')\n```</code>");
    assert_eq!(
        run.sandbox_output("rules"),
        SandboxOutput::Text("text wins over nothing".into())
    );
    let run = s.run_block(
        "<code>```python\nImage.open(image_path).save('a.png')\nprint('a.png')\n```</code>",
    );
    match run.sandbox_output("rules") {
        SandboxOutput::Images(imgs) => assert_eq!(imgs.len(), 1, "no repeats: {imgs:?}"),
        other => panic!("expected images, got {other:?}"),
    }
    let run = s.run_block("<code>```python\n1/0\n```</code>");
    match run.sandbox_output("rules") {
        SandboxOutput::Error(t) => {
            assert!(t.starts_with("Sandbox for rules: ZeroDivisionError"), "{t}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
