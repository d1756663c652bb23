"""Videos become frames: every N frames, N per second, scene changes; damaged videos; folders of videos and
images; re-runs. The videos are made here from real photos (scikit-image's), encoded with PyAV."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.conftest import skimage_photo, viscurate_cli
from viscurate.dataset import Dataset
from viscurate.errors import ViscurateError
from viscurate.media.video import FrameSampling, VideoReader
from viscurate.sources.ref import sample_id
from viscurate.sources.video import frame_origin

FPS = 25
SIZE = (320, 240)
SCENE_A, SCENE_B = 75, 50  # frames of the first photo, then of the second: a cut at frame 75
STEP = 3  # pixels the camera pans per frame: motion without a cut


def rendered_frames(first: str = "chelsea.png", second: str = "coffee.png") -> list[np.ndarray]:
    """The frames of the test video: a pan over one photo, a cut, a pan over another."""
    frames = []
    for name, count in ((first, SCENE_A), (second, SCENE_B)):
        photo = Image.open(skimage_photo(name)).convert("RGB")
        photo = photo.resize((SIZE[0] + STEP * count, SIZE[1] + 40))
        arr = np.asarray(photo)
        for i in range(count):
            frames.append(np.ascontiguousarray(arr[20:20 + SIZE[1], STEP * i:STEP * i + SIZE[0]]))
    return frames


def encode(path: Path, frames: list[np.ndarray], codec: str = "libx264") -> Path:
    """Encode ``frames`` at 25 fps into ``path`` (an mp4 with its index first, so a cut file still plays)."""
    options = {"movflags": "faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        for a in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return rendered_frames()


@pytest.fixture(scope="module")
def videos(tmp_path_factory, frames) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {"mp4": encode(d / "pan.mp4", frames), "avi": encode(d / "pan.avi", frames, codec="mpeg4")}


def all_ids(ds: Dataset) -> list[str]:
    return sorted(d["_id"] for d in ds.find({}, page_size=1000)["results"])


def picked(path: Path, sampling: FrameSampling) -> list[tuple[int, float, str]]:
    with VideoReader(str(path)) as video:
        out = [(f.index, round(f.timestamp, 4), f.rule) for f in video.frames(sampling)]
        assert video.damage is None and video.decoded == SCENE_A + SCENE_B
    return out


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_every_n_frames_n_per_second_and_scene_changes(videos, kind):
    path = videos[kind]
    total = SCENE_A + SCENE_B
    every = picked(path, FrameSampling.of(every_frames=10))
    assert every == [(i, round(i / FPS, 4), "every_frames") for i in range(0, total, 10)]
    per_second = picked(path, FrameSampling.of(fps=2))  # ticks at 0, 0.5, 1.0...: the first frame at or after each
    want = [math.ceil(k * FPS / 2) for k in range(0, 2 * total // FPS + 1)]
    assert per_second == [(i, round(i / FPS, 4), "fps") for i in want if i < total]
    # the cut between the two photos is found, the pan (3 px a frame) is not a cut
    assert picked(path, FrameSampling.of(scenes=True)) == [(0, 0.0, "scene"), (SCENE_A, SCENE_A / FPS, "scene")]
    both = picked(path, FrameSampling.of(fps=1, scenes=True))
    assert [(i, r) for i, _, r in both] == [(0, "scene"), (25, "fps"), (50, "fps"), (75, "scene"), (100, "fps")]
    assert picked(path, FrameSampling.of()) == picked(path, FrameSampling.of(fps=1))  # the default: 1 per second


def test_frame_samples_carry_their_video_and_their_pixels(tmp_path, videos, frames):
    ds = Dataset.create("v", tmp_path / "home")
    rep = ds.add_images(videos["mp4"], workers=1, progress=False, video={"every_frames": 25})
    assert (rep.videos, rep.frames, rep.added, rep.failed, rep.files) == (1, 5, 5, 0, 1)
    origin = str(videos["mp4"])
    docs = {d["video"]["frame"]: d for d in ds.find({"video.path": origin}, page_size=100)["results"]}
    assert sorted(docs) == [0, 25, 50, 75, 100]
    for index, doc in docs.items():
        assert doc["_id"] == sample_id(frame_origin(origin, index)) and doc["origin"] == f"{origin}#frame={index}"
        assert doc["source"] == "video" and doc["type"] == "image" and (doc["width"], doc["height"]) == SIZE
        v = doc["video"]
        assert v["timestamp"] == pytest.approx(index / FPS) and v["fps"] == pytest.approx(FPS)
        assert v["duration"] == pytest.approx((SCENE_A + SCENE_B) / FPS, abs=0.05)
        assert v["rule"] == "every_frames" and v["frames"] == SCENE_A + SCENE_B and v["sampling"] == "every_frames=25"
        # the stored JPEG, under the dataset's media folder, holds this frame (not its neighbours)
        stored = Path(doc["filepath"])
        assert stored.is_file() and (tmp_path / "home") in stored.parents and stored.suffix == ".jpg"
        pixels = np.asarray(Image.open(stored).convert("RGB"), dtype=np.float32)
        errors = {j: np.abs(pixels - frames[j]).mean() for j in range(max(0, index - 4), min(len(frames), index + 5))}
        assert min(errors, key=errors.get) == index and errors[index] < 6, errors
    assert not ds.find({"issues": "corrupt"})["results"]


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_a_truncated_video_gives_its_frames_and_one_flagged_sample(tmp_path, videos, kind):
    whole = videos[kind].read_bytes()
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(whole[: len(whole) * 55 // 100])
    ds = Dataset.create("v", tmp_path / "home")
    rep = ds.add_images(cut, workers=1, progress=False, video={"every_frames": 5})
    flagged = ds.find({"issues": "corrupt"})["results"]
    assert len(flagged) == 1 and rep.failed == 1
    bad = flagged[0]
    assert bad["origin"] == str(cut) and bad["_id"] == sample_id(str(cut)) and bad["type"] == "video"
    assert bad["issues"] == ["corrupt", "video_truncated"] and "video_truncated" in bad["error"]
    frames = ds.find({"source": "video"}, page_size=100)["results"]
    indices = sorted(d["video"]["frame"] for d in frames)
    # the frames before the damage: about half the video, each at its index and time
    assert 8 <= len(indices) < (SCENE_A + SCENE_B) // 5 and indices == list(range(0, 5 * len(indices), 5))
    assert all(d["video"]["timestamp"] == pytest.approx(d["video"]["frame"] / FPS) for d in frames)
    assert rep.frames == len(indices) and rep.added == len(indices) + 1
    # unchanged: not read again
    again = ds.add_images(cut, workers=1, progress=False, video={"every_frames": 5})
    assert (again.added, again.changed, again.unchanged, again.videos) == (0, 0, 1, 0)


def test_undecodable_videos_are_flagged_and_the_batch_goes_on(tmp_path, videos):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "text.mp4").write_text("not a video\n" * 20)
    (folder / "empty.avi").write_bytes(b"")
    (folder / "head.mp4").write_bytes(videos["mp4"].read_bytes()[:3000])  # cut inside its index
    shutil.copy(videos["avi"], folder / "good.avi")
    shutil.copy(skimage_photo("astronaut.png"), folder / "astronaut.png")
    ds = Dataset.create("v", tmp_path / "home")
    rep = ds.add_images(folder, workers=2, progress=False)
    bad = {Path(d["origin"]).name: d for d in ds.find({"issues": "corrupt"})["results"]}
    assert set(bad) == {"text.mp4", "empty.avi", "head.mp4"}
    assert bad["text.mp4"]["issues"] == ["corrupt", "not_a_video"] and "FFmpeg" in bad["text.mp4"]["error"]
    assert bad["empty.avi"]["issues"] == ["corrupt", "empty_file"]
    assert bad["head.mp4"]["issues"] == ["corrupt", "video_truncated"]  # its index, then nothing to decode
    assert rep.videos == 4 and rep.frames == 5 and rep.failed == 3  # good.avi at 1 per second: 5 frames
    assert ds.count({"origin": str(folder / "astronaut.png"), "issues": {"$ne": "corrupt"}}) == 1


def test_a_folder_of_videos_and_images_and_re_runs(tmp_path, frames):
    folder = tmp_path / "in"
    folder.mkdir()
    video = encode(folder / "clip.mp4", frames)
    shutil.copy(skimage_photo("chelsea.png"), folder / "chelsea.png")
    shutil.copy(skimage_photo("no_time_for_that_tiny.gif"), folder / "anim.gif")
    ds = Dataset.create("v", tmp_path / "home")
    first = ds.add_images(folder, workers=2, progress=False, video={"fps": 1})
    assert (first.files, first.videos, first.frames, first.added, first.failed) == (3, 1, 5, 7, 0)
    # the GIF stays one image sample with its frame count, as before
    gif = ds.find({"origin": str(folder / "anim.gif")})["results"][0]
    assert gif["type"] == "image" and gif["format"] == "GIF" and gif["frames"] > 1 and "video" not in gif
    assert ds.count({"origin": str(folder / "chelsea.png"), "type": "image"}) == 1
    ids = all_ids(ds)
    ds.update({"video.frame": 50}, {"$set": {"tags": ["keep"]}})

    again = ds.add_images(folder, workers=2, progress=False, video={"fps": 1})  # nothing new
    assert (again.added, again.changed, again.unchanged, again.videos) == (0, 0, 3, 0)
    assert all_ids(ds) == ids

    # another sampling extracts again: the frames both pick keep their id and what users added
    twice = ds.add_images(folder, workers=1, progress=False, video={"fps": 2})
    assert (twice.videos, twice.frames, twice.changed, twice.added) == (1, 10, 5, 5)
    assert ds.find({"video.frame": 50})["results"][0]["tags"] == ["keep"]
    assert ds.count({"source": "video"}) == 10

    # a changed video is extracted again; the frames it no longer has are gone, no duplicate
    encode(video, frames[:60])
    changed = ds.add_images(folder, workers=1, progress=False, video={"fps": 2})
    assert changed.videos == 1 and changed.frames == 5
    left = sorted(d["video"]["frame"] for d in ds.find({"source": "video"}, page_size=100)["results"])
    assert left == [0, 13, 25, 38, 50] and ds.count() == 7

    # the video is deleted: its frames are flagged missing (and pruned on request), like any file
    video.unlink()
    gone = ds.add_images(folder, workers=1, progress=False)
    assert gone.missing == 5 and ds.count({"issues": "missing"}) == 5
    pruned = ds.add_images(folder, workers=1, progress=False, prune=True)
    assert pruned.pruned == 5 and ds.count() == 2


def test_a_video_named_directly_and_its_missing_frames(tmp_path, frames):
    (tmp_path / "in").mkdir()
    video = encode(tmp_path / "in" / "named.mp4", frames[:50])
    listed = tmp_path / "list.txt"
    listed.write_text(f"{video}\n")
    ds = Dataset.create("v", tmp_path / "home")
    assert ds.add_images(video, workers=0, progress=False).frames == 2
    assert ds.add_images(listed, workers=0, progress=False).unchanged == 1  # named in a path list: the same video
    video.unlink()
    rep = ds.add_images(listed, workers=0, progress=False)  # the list still names it: its frames are missing
    assert rep.missing == 2 and ds.count({"issues": "missing", "source": "video"}) == 2
    assert ds.add_images(tmp_path / "in", workers=0, progress=False, prune=True).pruned == 2
    assert ds.count() == 0


def test_video_options_are_checked():
    with pytest.raises(ValueError, match="not both"):
        FrameSampling.of(every_frames=5, fps=2)
    from viscurate.media.video import frame_sampling
    for bad in ({"every_frames": 0}, {"fps": -1}, {"fsp": 2}, {"scene_threshold": 300}):
        with pytest.raises(ViscurateError, match="video options"):
            frame_sampling(bad)
    assert frame_sampling({"scene_threshold": 40}).key == "scenes=40"


def test_cli_video_options(tmp_path, home, videos):
    out = viscurate_cli(home, "ingest", videos["avi"], "-d", "clips", "--every-frames", "25", "--scenes",
                        "--json", "--workers", "1")
    report = json.loads(out.stdout)
    assert (report["videos"], report["frames"], report["added"]) == (1, 5, 5)  # 0, 25, 50, 75 (also a cut), 100
    bad = viscurate_cli(home, "ingest", videos["avi"], "-d", "clips", "--every-frames", "5", "--fps", "2",
                        check=False)
    assert bad.returncode != 0 and "not both" in bad.stdout + bad.stderr


def test_a_video_past_its_time_limit_keeps_the_frames_decoded_so_far(tmp_path, videos):
    from viscurate.pipeline.video import extract_video
    path = str(videos["mp4"])
    got = extract_video(path, path, 1, 0.0, FrameSampling.of(every_frames=10), str(tmp_path / "media"), seconds=1e-9)
    assert [d["video"]["frame"] for d in got.docs] == [0, 10, 20, 30, 40, 50, 60]  # checked every 64 frames
    assert got.failure["issues"] == ["corrupt", "video_timeout"] and "item_timeout" in got.failure["error"]


KILLED_RUN = """
import sys
from viscurate.media.video import FrameSampling
from viscurate.pipeline.ingest import ingest
from viscurate.store.catalog import Catalog

with Catalog(sys.argv[1], "kill", write=True) as cat:
    ingest(cat, [sys.argv[2]], workers=2, batch_size=1, progress=False, video=FrameSampling.of(every_frames=5),
           on_batch=lambda report: print("committed", flush=True))
print("finished", flush=True)
"""


def test_kill_9_mid_run_then_a_re_run_gives_every_frame_once(tmp_path, videos):
    import os
    import signal
    import subprocess
    import sys

    from viscurate.pipeline.ingest import ingest
    from viscurate.store.catalog import Catalog
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(6):
        shutil.copy(videos["mp4" if n % 2 else "avi"], folder / f"clip{n}.{'mp4' if n % 2 else 'avi'}")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "ds"), str(folder)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    commits = 0
    for line in proc.stdout:
        commits += line.startswith("committed")
        if commits == 2:
            os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers end with it
            break
    proc.wait(timeout=60)
    assert commits == 2, "the run ended before it could be killed"
    with Catalog(tmp_path / "ds", "kill", write=True) as cat:
        assert 0 < cat.count({"source": "video"}) < 6 * 25
        rep = ingest(cat, [folder], workers=2, progress=False, video=FrameSampling.of(every_frames=5))
        assert rep.unchanged >= 2 and rep.videos <= 4
        docs = list(cat.iter_docs())
    ids = [d["_id"] for d in docs]
    assert len(ids) == len(set(ids)) == 6 * 25 and not any("issues" in d and "corrupt" in d["issues"] for d in docs)
    for n in range(6):
        origin = str(folder / f"clip{n}.{'mp4' if n % 2 else 'avi'}")
        assert sorted(d["video"]["frame"] for d in docs if d["video"]["path"] == origin) == list(range(0, 125, 5))


def test_a_video_once_taken_for_an_image_becomes_frames(tmp_path, videos):
    """Before videos were decoded, ``--include '*'`` made a video one sample flagged ``not_an_image``."""
    origin = str(videos["avi"])
    ds = Dataset.create("v", tmp_path / "home")
    ds.add_documents([{"_id": sample_id(origin), "origin": origin, "filepath": origin, "source": "local", "type": "image",
                       "size_bytes": 1, "mtime": 0.0, "issues": ["corrupt", "not_an_image"], "tags": ["old"]}])
    rep = ds.add_images(origin, workers=0, progress=False)
    assert (rep.frames, rep.failed) == (5, 0) and ds.count() == 5 and ds.count({"_id": sample_id(origin)}) == 0


def test_a_portrait_phone_video_is_stored_upright(tmp_path, frames):
    """A phone stores a portrait video sideways, with a 90-degree turn in the track's display matrix."""
    import struct
    video = encode(tmp_path / "phone.mp4", frames[:10])
    data = bytearray(video.read_bytes())
    at = data.find(b"tkhd") + 44  # the track header's matrix (version 0): {0, 1, -1, 0} turns the picture clockwise
    assert struct.unpack(">9i", data[at:at + 36]) == (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    data[at:at + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, SIZE[1] << 16, 0, 0x40000000)
    video.write_bytes(bytes(data))
    with VideoReader(str(video)) as reader:
        first = next(iter(reader.frames(FrameSampling.of(every_frames=100))))
    assert first.image.size == (SIZE[1], SIZE[0])
    shown = np.asarray(first.image, dtype=np.float32)
    assert np.abs(shown - np.rot90(frames[0], k=-1)).mean() < 6 < np.abs(shown - np.rot90(frames[0], k=1)).mean()
