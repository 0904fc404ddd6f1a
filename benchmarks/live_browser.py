"""The Live page end to end: frames that come back with boxes per second, as Chromium receives them.

    .venv/bin/python benchmarks/live_browser.py [--seconds 20] [--warmup 10] [--fps 30]

A real `streamlit run` of the dashboard and Debian's Chromium (headless), whose fake camera
plays a 640x480 Y4M clip at --fps: a real FER2013 face drifting across a gray scene, each
frame's number written into its top-left corner as ten black or white squares. The Live page
runs with its default settings (model, int8, detector); START is pressed as a user would.

streamlit-webrtc answers every camera frame: with the newest processed frame, or again with
the last one when processing has not kept up. So counting the frames the browser decodes
would count repeats. Instead, for each frame the page's <video> presents
(requestVideoFrameCallback), the script reads the frame number back from the corner and looks
for the purple box; a frame counts once, when its number first appears, and as "with a box"
when the box is drawn on it. WebRTC's own counters (getStats: frames sent by the camera side,
decoded on the way back) are printed beside. The in-process figure for the same work (no
browser, no video codec): benchmarks/inference.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
DATA = PROJECT.parent / "shared" / "data" / "fer2013"
BITS, BLOCK = 10, 24  # the frame number: 10 squares of 24 px along the top-left edge

# Record every frame the remote <video> presents: its number (from the corner squares) and
# whether the purple box is on it, on a 320x240 copy.
MEASURE = """
([bits, block]) => {
  const video = [...document.querySelectorAll('video')].find(v => v.videoWidth > 0);
  if (!video) return false;
  const canvas = document.createElement('canvas');
  canvas.width = 320; canvas.height = 240;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  window.__frames = [];
  const step = (now, meta) => {
    ctx.drawImage(video, 0, 0, 320, 240);
    const sx = 320 / video.videoWidth, sy = 240 / video.videoHeight;
    let number = 0;
    for (let b = 0; b < bits; b++) {
      const p = ctx.getImageData(Math.round((b + 0.5) * block * sx), Math.round(0.5 * block * sy), 1, 1).data;
      if (p[0] + p[1] + p[2] > 3 * 128) number |= 1 << b;
    }
    const pixels = ctx.getImageData(0, 0, 320, 240).data;
    let purple = 0;
    const near = (i, r, g, b) => Math.abs(pixels[i] - r) < 45 && Math.abs(pixels[i + 1] - g) < 45
      && Math.abs(pixels[i + 2] - b) < 45;
    for (let i = 0; i < pixels.length; i += 4) if (near(i, 123, 63, 160)) purple++;
    window.__frames.push([performance.now(), number, purple >= 40, meta.presentedFrames]);
    video.requestVideoFrameCallback(step);
  };
  video.requestVideoFrameCallback(step);
  return true;
}
"""

# WebRTC's counters: RTCPeerConnection is wrapped before the component makes one.
KEEP_CONNECTIONS = """
window.__pcs = [];
const Original = window.RTCPeerConnection;
if (Original) {
  window.RTCPeerConnection = function (...args) { const pc = new Original(...args); window.__pcs.push(pc); return pc; };
  window.RTCPeerConnection.prototype = Original.prototype;
}
"""
STATS = """
async () => {
  const out = {};
  for (const pc of window.__pcs || []) {
    (await pc.getStats()).forEach(s => {
      if (s.kind !== 'video') return;
      if (s.type === 'outbound-rtp') out.sent = s.framesSent;
      if (s.type === 'inbound-rtp') Object.assign(out, {decoded: s.framesDecoded, dropped: s.framesDropped});
    });
  }
  return out;
}
"""


def camera_clip(path: Path, fps: int, seconds: int = 6) -> Path:
    """A Y4M clip: a detectable FER2013 face drifting over gray, each frame numbered in the corner."""
    from tests.conftest import detectable_faces

    face = Image.open(detectable_faces(DATA, n=1)[0]).convert("L").resize((200, 200), Image.Resampling.BICUBIC)
    frames = fps * seconds
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for k in range(frames):
            canvas = Image.new("L", (640, 480), 110)
            canvas.paste(face, (170 + round(100 * np.sin(2 * np.pi * k / frames)), 150))
            y = np.asarray(canvas).copy()
            for b in range(BITS):
                y[:BLOCK, b * BLOCK : (b + 1) * BLOCK] = 235 if (k >> b) & 1 else 16
            out.write(b"FRAME\n" + y.tobytes() + bytes([128]) * (640 * 480 // 2))
    return path


def component_frame(page):
    deadline = time.time() + 60
    while time.time() < deadline:
        for frame in page.frames:
            if frame != page.main_frame and frame.evaluate("!!document.querySelector('video')"):
                return frame
        time.sleep(0.5)
    raise SystemExit("no video in the Live page's component")


def measure(url: str, browser, warmup: float, seconds: float) -> dict:
    from tests.conftest import browser_page, open_in_browser

    with browser_page(browser) as page:
        page.context.add_init_script(KEEP_CONNECTIONS)
        open_in_browser(page, f"{url}/live")
        iframe = page.frame_locator("iframe[title*='webrtc']").first
        iframe.get_by_role("button", name="START").click()
        iframe.locator("video").wait_for()
        frame = component_frame(page)
        frame.wait_for_function("[...document.querySelectorAll('video')].some(v => v.videoWidth > 0)", timeout=60_000)
        time.sleep(warmup)
        assert frame.evaluate(MEASURE, [BITS, BLOCK])
        before, start = frame.evaluate(STATS), time.perf_counter()
        time.sleep(seconds)
        after, elapsed = frame.evaluate(STATS), time.perf_counter() - start
        frames = frame.evaluate("window.__frames")
        iframe.get_by_role("button", name="STOP").click()
    numbers = [n for _, n, _, _ in frames]
    if "--debug" in sys.argv:
        print(numbers[:120], file=sys.stderr)
    new = [i for i in range(len(frames)) if i == 0 or numbers[i] != numbers[i - 1]]
    span = (frames[-1][0] - frames[0][0]) / 1000
    rate = lambda key: (after.get(key, 0) - before.get(key, 0)) / elapsed  # noqa: E731
    return {
        "presented": len(frames) / span,
        "distinct": len(new) / span,
        "with_box": sum(frames[i][2] for i in new) / span,
        "sent": rate("sent"),
        "decoded": rate("decoded"),
        "seconds": span,
    }


def stage_costs(clip: Path, frames: int = 150) -> dict[str, float]:
    """Milliseconds per frame of each step the dashboard's process takes for one Live frame, run
    here one after another as streamlit-webrtc and aiortc run them (VP8 in and out with aiortc's
    own encoder settings; the Live page's default model and detector)."""
    import av
    import cv2
    from aiortc.codecs.vpx import Vp8Encoder

    from fer_core.faces.detection import DEFAULT_DETECTOR, VIDEO_DETECT_MAX_SIDE
    from fer_core.faces.predict import classify_faces, find_faces
    from fer_core.inference.loading import load_named_model

    model = load_named_model("stcnn", int8=True)
    raw = np.fromfile(clip, np.uint8)
    header = raw[: raw[:200].tolist().index(10) + 1].tobytes()
    size, body = 640 * 480 * 3 // 2, raw[len(header) :]
    yuv = [body[k * (size + 6) + 6 : (k + 1) * (size + 6)].reshape(720, 640) for k in range(frames)]
    camera = av.CodecContext.create("libvpx", "w")  # what the browser sends (Chromium encodes VP8 too)
    camera.width, camera.height, camera.pix_fmt, camera.bit_rate = 640, 480, "yuv420p", 1_500_000
    decoder, encoder = av.CodecContext.create("libvpx", "r"), Vp8Encoder()
    times: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        times.setdefault(name, []).append(1000 * (time.perf_counter() - start))
        return out

    for k, plane in enumerate(yuv):
        source = av.VideoFrame.from_ndarray(plane, format="yuv420p")
        source.pts = k
        for packet in camera.encode(source):
            for frame in timed("VP8 decode (camera frame in)", decoder.decode, packet):
                image = timed("to BGR array", lambda f: f.to_ndarray(format="bgr24"), frame)
                rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                detect = f"face detection ({DEFAULT_DETECTOR}, {VIDEO_DETECT_MAX_SIDE} px)"
                faces = timed(detect, find_faces, rgb, False, VIDEO_DETECT_MAX_SIDE)
                timed("stcnn int8 (ONNX Runtime)", classify_faces, faces, {"stcnn": model})
                out = timed("back to a video frame", av.VideoFrame.from_ndarray, image, "bgr24")
                out.pts, out.time_base = k, frame.time_base
                timed("VP8 encode (aiortc, frame out)", encoder.encode, out)
    return {name: float(np.median(values[10:])) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-stages", action="store_true", help="skip the in-process cost of each step")
    args = parser.parse_args()
    from fer_core.device import cpu_description
    from tests.conftest import chromium, streamlit_server

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        clip = camera_clip(home / "camera.y4m", args.fps)
        with streamlit_server(home) as url, chromium(clip) as browser:
            results = [measure(url, browser, args.warmup, args.seconds) for _ in range(args.repeats)]
        stages = {} if args.no_stages else stage_costs(clip)
    print(
        f"{cpu_description()}; Live page with its default settings, a {args.fps} fps 640x480 fake camera, "
        f"Chromium headless; {args.seconds:.0f} s measured after {args.warmup:.0f} s\n"
    )
    print("| frames/s | presented by <video> | distinct frames back | with a box | camera frames sent | decoded |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| run | {r['presented']:.1f} | {r['distinct']:.1f} | **{r['with_box']:.1f}** | {r['sent']:.1f} | "
            f"{r['decoded']:.1f} |"
        )
    if stages:
        print("\nThe same steps in one process, one after another (median ms per frame, after 10):\n")
        print("| step | ms |\n|---|---|")
        for name, ms in stages.items():
            print(f"| {name} | {ms:.1f} |")
        print(f"| all | {sum(stages.values()):.1f} (at most {1000 / sum(stages.values()):.0f} frames/s) |")


if __name__ == "__main__":
    main()
