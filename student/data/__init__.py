"""Streaming training data: image, plan and label shards in lockstep → augmented batches.

    from student.config import DataSettings
    from student.data.loader import make_loader
    from student.data.stream import DistillStream

    stream = DistillStream(DATASET, ["dav2-l", "dpt"], DataSettings(size=518), batch_size=4, seed=0)
    loader = make_loader(stream, workers=4)
    for epoch in range(start_epoch, epochs):
        stream.set_epoch(epoch)
        for batch in loader:          # exactly len(stream) batches on every rank
            ...
            checkpoint["data"] = stream.state_dict()

A batch (`collate`, B samples, S = `size`, Tmax = the largest tile count in the batch):

| key | shape | dtype | meaning |
|---|---|---|---|
| `image` | [B, 3, S, S] | float32 | region (or whole image) resized to S, flipped; in [0, 1] |
| `image_aug` | [B, 3, S, S] | float32 | `image` after photometric jitter/blur: the student input |
| `sc` | [B, 1, S, S] | float32 | the teacher's label of the view (disparity); NaN = invalid |
| `valid` | [B, 1, S, S] | bool | finite pixels of `sc` |
| `tiles` | [B, Tmax, S, S] | float32 | the region's tile labels; zero beyond `tile_count` |
| `tile_boxes` | [B, Tmax, 4] | float32 | tile boxes (x0, y0, x1, y1) in the S×S frame of `sc` |
| `tile_count` | [B] | int64 | real tiles per sample (0 in baseline mode) |
| `region` | [B] | int64 | region k of the plan (-1 in baseline mode) |
| `flip` | [B] | bool | horizontally flipped |
| `focal` | [B, 2] | float32 | the S×S view's focal length (fx', fy') in pixels; NaN: unknown |
| `teacher_index` | [B] | int64 | index into `teachers` (-1: fused, `teacher_mix=average`) |
| `key`, `teacher` | list[str] | | image keys and teacher (column) names |
| `epoch`, `step` | int | | position: rank-local batch `step` of `epoch` |

By default all samples of a batch share one teacher (one teacher per iteration).
"""
