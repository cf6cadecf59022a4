"""The app's `s`: its toast says truthfully whether a .bak was kept, and a config file changed
on disk since it was loaded is only overwritten by a second `s` within SAVE_CONFIRM_S."""

from __future__ import annotations

from pathlib import Path

from sluice.engine.config import Config, load_config
from sluice.tui.app import SAVE_CONFIRM_S, SluiceApp

from .helpers import read_text, record_notes, write_text

EDITED_BY_HAND = "# edited by hand while the app ran\n[queue]\nmaxsize = 99\n"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_saving_a_new_file_does_not_claim_a_backup(
    fast_config: Config, tmp_path: Path
) -> None:
    path = tmp_path / "fresh.toml"
    app = SluiceApp(path, config=fast_config, continuous=False)
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await pilot.press("q")
    message, kwargs = notes[-1]
    assert kwargs.get("title") == "knobs saved"
    assert message == f"saved {path} (a new file: there was no previous one to keep)"
    assert ".bak" not in message and not path.with_name("fresh.toml.bak").exists()
    assert load_config(path)["queue.maxsize"] == fast_config["queue.maxsize"]


async def test_saving_over_a_file_names_its_backup_and_saves_again_without_a_warning(
    fast_config: Config, config_path: Path
) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await pilot.press("s")  # the app's own first save is not "a change on disk"
        await pilot.press("q")
    backup = config_path.with_name("config.toml.bak")
    saved = [m for m, kw in notes if kw.get("title") == "knobs saved"]
    assert saved == [f"saved {config_path} (previous kept as {backup})"] * 2
    assert not [m for m, kw in notes if kw.get("severity") in ("warning", "error")]


async def test_a_file_changed_on_disk_is_kept_until_s_is_pressed_again(
    fast_config: Config, config_path: Path
) -> None:
    clock = Clock()
    app = SluiceApp(config=fast_config, continuous=False, clock=clock)
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        write_text(config_path, EDITED_BY_HAND)  # another writer, after the app loaded it
        await pilot.press("s")
        message, kwargs = notes[-1]
        assert kwargs.get("severity") == "warning" and kwargs.get("title") == "not saved"
        assert "changed on disk since it was loaded" in message
        assert f"Press s again within {SAVE_CONFIRM_S:g} s to overwrite it." in message
        assert read_text(config_path) == EDITED_BY_HAND
        # Too late: the window closed, so `s` warns again and still writes nothing.
        clock.now += SAVE_CONFIRM_S + 1
        await pilot.press("s")
        assert notes[-1][1].get("severity") == "warning"
        assert read_text(config_path) == EDITED_BY_HAND
        # In time: the second `s` overwrites the app's knobs, keeping the hand edit's comment.
        clock.now += 1
        await pilot.press("s")
        assert notes[-1][1].get("title") == "knobs saved"
        await pilot.press("q")
    text = read_text(config_path)
    assert "# edited by hand while the app ran" in text
    assert load_config(config_path)["queue.maxsize"] == fast_config["queue.maxsize"]
    assert read_text(config_path.with_name("config.toml.bak")) == EDITED_BY_HAND
