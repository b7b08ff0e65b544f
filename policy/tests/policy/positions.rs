//! M-RoPE position ids equal transformers' `get_rope_index` on a text/image/text/image/text
//! sequence, built incrementally.

use policy::{PositionIds, Positions};
use safetensors::SafeTensors;

use crate::fixtures::{i64s, read};

#[test]
fn incremental_positions_equal_get_rope_index() {
    let bytes = read("rope_index.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let ids = i64s(&st, "input_ids");
    let grids = i64s(&st, "grid_thw");
    let want = i64s(&st, "position_ids");
    let delta = i64s(&st, "delta")[0];
    let (image_token, n) = (1002, ids.len());

    // Walk the sequence as a rollout would: text runs, then each image's tokens.
    let mut pos = Positions::new();
    let mut got = PositionIds::default();
    let (mut i, mut image) = (0, 0);
    while i < n {
        let run = ids[i..]
            .iter()
            .take_while(|&&t| (t == image_token) == (ids[i] == image_token))
            .count();
        if ids[i] == image_token {
            let g = [
                grids[3 * image] as usize,
                grids[3 * image + 1] as usize,
                grids[3 * image + 2] as usize,
            ];
            let p = pos.image(g, 2);
            assert_eq!(p.len(), run, "image {image} token count");
            got.extend(&p);
            image += 1;
        } else {
            got.extend(&pos.text(run));
        }
        i += run;
    }
    assert_eq!(got.t, want[..n].to_vec(), "temporal");
    assert_eq!(got.h, want[n..2 * n].to_vec(), "height");
    assert_eq!(got.w, want[2 * n..].to_vec(), "width");
    assert_eq!(pos.delta(), delta);
}
