"""Make screenshots/*.svg from the real app, one per screen (the README shows them).

    python scripts/screenshots.py            # all scenes
    python scripts/screenshots.py cost run-done

Each scene (screens/demo.py: SCENES) drives RocketWizardApp with Pilot against
the scripted DemoDeployment and a fixed clock, exactly as the snapshot tests do,
so the pictures are the tested screens. Most are 80x24, the size everything must
fit; two are larger.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual._doc import take_svg_screenshot  # noqa: E402  (the snapshot plugin's own renderer)

from screens.demo import SCENES, demo_app, prepare_state  # noqa: E402


def main(argv: list[str]) -> int:
    out = ROOT / "screenshots"
    out.mkdir(exist_ok=True)
    names = argv or list(SCENES)
    for name in names:
        scene, size = SCENES[name]
        prepare_state()
        svg = take_svg_screenshot(app=demo_app(), run_before=scene, terminal_size=size,
                                  title=f"rocket-wizard: {name}")
        path = out / f"{name}.svg"
        path.write_text(svg)
        print(f"{path.relative_to(ROOT)}  {size[0]}x{size[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
