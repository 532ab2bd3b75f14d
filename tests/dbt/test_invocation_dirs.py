"""Per-invocation dbt target directories are pruned to the newest few (plain filesystem, no dbt)."""

from __future__ import annotations

import os

from corisync_assets.dbt.assets import INVOCATION_DIR_PREFIX, prune_invocation_dirs


def test_only_the_newest_invocation_dirs_stay_and_nothing_else_is_touched(tmp_path):
    made = []
    for i in range(25):
        d = tmp_path / f"{INVOCATION_DIR_PREFIX}{i:07x}-abc"
        (d / "compiled").mkdir(parents=True)
        (d / "manifest.json").write_text("{}")
        os.utime(d, (1_000_000 + i, 1_000_000 + i))  # i = age order, newest last
        made.append(d)
    other = tmp_path / "local"  # the project's own target (manifest of the code location)
    other.mkdir()
    (tmp_path / f"{INVOCATION_DIR_PREFIX}not-a-dir").write_text("x")

    removed = prune_invocation_dirs(tmp_path, keep=20)

    assert sorted(removed) == sorted(made[:5])
    assert [d.exists() for d in made] == [False] * 5 + [True] * 20
    assert other.is_dir() and (tmp_path / f"{INVOCATION_DIR_PREFIX}not-a-dir").is_file()


def test_an_invocations_partial_parse_replaces_the_shared_one(tmp_path):
    from corisync_assets.dbt.assets import keep_partial_parse

    invocation = tmp_path / f"{INVOCATION_DIR_PREFIX}abc-def"
    invocation.mkdir()
    (tmp_path / "partial_parse.msgpack").write_bytes(b"parsed with another profile")
    assert not keep_partial_parse(invocation, tmp_path)  # a build that wrote none leaves the shared one alone
    assert (tmp_path / "partial_parse.msgpack").read_bytes() == b"parsed with another profile"

    (invocation / "partial_parse.msgpack").write_bytes(b"parsed with this run's profile")
    assert keep_partial_parse(invocation, tmp_path)
    assert (tmp_path / "partial_parse.msgpack").read_bytes() == b"parsed with this run's profile"
    assert sorted(p.name for p in tmp_path.iterdir()) == [invocation.name, "partial_parse.msgpack"]
