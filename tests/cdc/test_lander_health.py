"""The lander's liveness check (the compose health check `corisync lander --health`)."""

import os
import time

from corisync_assets.cdc.lander import healthy


def test_health_follows_the_heartbeat_age(tmp_path):
    beat = tmp_path / "beat"
    assert not healthy(beat)  # never ran
    beat.touch()
    assert healthy(beat, within_s=60)
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert not healthy(beat, within_s=60)  # stuck for two minutes
