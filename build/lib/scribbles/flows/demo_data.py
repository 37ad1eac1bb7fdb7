"""Deterministic, offline builders of the two demo datasets.

``digits.csv`` is scikit-learn's bundled 8x8 digits, kept as images (``label``, ``p0_0`` .. ``p7_7``).
``activity.csv`` is a seeded, synthetic wearable set: 3-axis accelerometer windows (32 steps) from 30
subjects doing 5 activities over 60 days. Every subject has a signature (sensor gain, mounting
orientation, offset, noise; their own tempo, gait and posture per activity) and gain, mounting, offset
and tempo drift slowly over the 60 days, so a shuffled split scores clearly higher than a split grouped
by subject or by time: the leakage the notes warn about.

Only the legacy ``numpy.random.RandomState`` is used (NumPy freezes its stream) and every float is
rounded to 4 decimals, so :func:`write_csv` gives the same bytes on every machine.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd

N_SUBJECTS, N_DAYS, N_STEPS = 30, 60, 32
START = datetime(2026, 1, 1)
ACTIVITIES = ("walking", "running", "cycling", "sitting", "standing")
# Thigh-worn sensor, per activity: cycles per window, dynamic amplitude per axis (g), second-harmonic
# share, and the direction of gravity in the body frame (thigh vertical when upright, level when seated).
_CYCLES = np.array([3.0, 5.0, 2.2, 0.6, 0.9])
_AMP = 1.5 * np.array(
    [[0.35, 0.20, 0.45], [0.80, 0.45, 1.00], [0.30, 0.35, 0.15], [0.03, 0.03, 0.02], [0.04, 0.03, 0.03]]
)
_HARM = np.array([0.45, 0.35, 0.10, 0.0, 0.0])
_GRAVITY = np.array([[0.15, 0.0, 1.0], [0.35, 0.0, 1.0], [0.8, 0.1, 0.6], [1.0, 0.05, 0.15], [0.0, 0.0, 1.0]])
SIGNAL_COLUMNS = [f"t{t:02d}_{axis}" for t in range(N_STEPS) for axis in "xyz"]


def build_digits() -> pd.DataFrame:
    """Return scikit-learn's bundled digits as ``label`` plus row-major pixels ``p{r}_{c}`` (0..16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images.reshape(len(digits.images), 64).astype(np.int64)
    frame = pd.DataFrame(pixels, columns=[f"p{r}_{c}" for r in range(8) for c in range(8)])
    frame.insert(0, "label", digits.target.astype(np.int64))
    return frame


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Return the rotation matrix for Euler angles ``(a, b, c)`` in radians (x, then y, then z)."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _window(rng: np.random.RandomState, act: int, subj: dict, sess: dict) -> np.ndarray:
    """Return one (32, 3) accelerometer window for activity ``act`` of a subject in one session."""
    t = np.arange(N_STEPS) / N_STEPS
    cycles = _CYCLES[act] * sess["tempo"] * subj["pace"][act] * rng.lognormal(0.0, 0.02)
    phase = rng.uniform(0.0, 2 * np.pi, size=3)
    angle = 2 * np.pi * cycles * t[:, None]
    wave = np.sin(angle + phase) + _HARM[act] * np.sin(2 * angle + 2 * phase)
    dynamic = _AMP[act] * subj["style"][act] * rng.lognormal(0.0, 0.03) * wave
    gravity = _GRAVITY[act] / np.linalg.norm(_GRAVITY[act])
    body = (gravity + dynamic) @ _rotation(subj["posture"][act]).T
    mounting = _rotation(sess["mount"] + rng.normal(0.0, 0.02, size=3))
    noise = rng.normal(0.0, subj["noise"], size=(N_STEPS, 3))
    return sess["gain"] * body @ mounting.T + sess["offset"] + noise


def _session(rng: np.random.RandomState, subj: dict, drift: float) -> dict:
    """Return a session's sensor state: the subject's signature drifted by ``drift`` (0..1), re-mounted."""
    return {
        "tempo": subj["tempo"] * (1.0 + subj["tempo_drift"] * drift) * rng.lognormal(0.0, 0.02),
        "mount": subj["mount"] + subj["mount_drift"] * drift + rng.normal(0.0, 0.05, size=3),
        "gain": subj["gain"] * (1.0 + subj["gain_drift"] * drift),
        "offset": subj["offset"] + subj["offset_drift"] * drift,
    }


def _subject(rng: np.random.RandomState) -> dict:
    """Draw one subject's signature: sensor gain, mounting, offset, noise; own tempo, gait and posture."""
    return {
        "gain": rng.lognormal(0.0, 0.15),
        "mount": rng.normal(0.0, 0.15, size=3),
        "offset": rng.normal(0.0, 0.1, size=3),
        "tempo": rng.lognormal(0.0, 0.1),
        "style": rng.lognormal(0.0, 0.4, size=(len(ACTIVITIES), 3)),
        "pace": rng.lognormal(0.0, 0.2, size=len(ACTIVITIES)),
        "posture": rng.normal(0.0, 0.4, size=(len(ACTIVITIES), 3)),
        "noise": rng.uniform(0.01, 0.06),
        "gain_drift": rng.normal(0.0, 0.15),
        "mount_drift": rng.normal(0.0, 0.25, size=3),
        "offset_drift": rng.normal(0.0, 0.2, size=3),
        "tempo_drift": rng.normal(0.1, 0.1),
    }


def build_activity(seed: int = 0) -> pd.DataFrame:
    """Return the seeded wearable set: ``subject``, ``activity``, ``timestamp``, ``t00_x`` .. ``t31_z``.

    Each subject records on 4-5 days spread evenly over 60 days from 2026-01-01; a session has a block of
    4-5 consecutive 10-second windows per activity. Rows are sorted by (timestamp, subject).
    """
    rng = np.random.RandomState(seed)
    rows: list[tuple[str, str, str]] = []
    signals: list[np.ndarray] = []
    for s in range(N_SUBJECTS):
        subj = _subject(rng)
        n_sessions = rng.randint(4, 6)
        edges = np.linspace(0, N_DAYS, n_sessions + 1).astype(int)
        for day in (rng.randint(lo, hi) for lo, hi in pairwise(edges)):
            hour, minute = rng.randint(7, 19), rng.randint(60)
            clock = START + timedelta(days=int(day), hours=int(hour), minutes=int(minute))
            sess = _session(rng, subj, day / (N_DAYS - 1))
            for act in rng.permutation(len(ACTIVITIES)):
                for _ in range(rng.randint(4, 6)):
                    signals.append(_window(rng, int(act), subj, sess))
                    rows.append((f"s{s + 1:02d}", ACTIVITIES[act], clock.strftime("%Y-%m-%dT%H:%M:%S")))
                    clock += timedelta(seconds=10)
                clock += timedelta(minutes=int(rng.randint(2, 6)))
    frame = pd.DataFrame(rows, columns=["subject", "activity", "timestamp"])
    values = np.round(np.stack(signals).reshape(len(signals), -1), 4)
    frame = pd.concat([frame, pd.DataFrame(values, columns=SIGNAL_COLUMNS)], axis=1)
    return frame.sort_values(["timestamp", "subject"], kind="mergesort").reset_index(drop=True)


SEQUENCE_WINDOWS, SEQUENCE_STRIDE, SEQUENCE_EVERY = 4, 2, 2


def build_activity_sequences(activity: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return the sequence-labelling variant of the activity set, for the ``ctc`` demo.

    Each row joins ``SEQUENCE_WINDOWS`` consecutive windows of one subject's session (every
    ``SEQUENCE_STRIDE``-th start; every ``SEQUENCE_EVERY``-th step kept, so 4 x 16 = 64 steps) and its
    target ``activities`` is the sequence of activities in them, repeats collapsed ("walking running").
    Columns: ``subject``, ``activities``, ``timestamp`` (of the first window), ``t00_x`` .. ``t63_z``.
    Derived from :func:`build_activity` only, so it is as deterministic as that set.
    """
    frame = build_activity() if activity is None else activity
    ordered = frame.sort_values(["subject", "timestamp"], kind="mergesort").reset_index(drop=True)
    signals = ordered[SIGNAL_COLUMNS].to_numpy().reshape(len(ordered), N_STEPS, 3)[:, ::SEQUENCE_EVERY]
    times = pd.to_datetime(ordered["timestamp"])
    # A new session starts with a new subject or after an hour without windows.
    new_session = (ordered["subject"] != ordered["subject"].shift()) | (times.diff() > pd.Timedelta(hours=1))
    session = new_session.cumsum().to_numpy()
    activity_of = ordered["activity"].to_numpy()
    rows, values = [], []
    for sid in np.unique(session):
        members = np.flatnonzero(session == sid)
        for start in range(0, len(members) - SEQUENCE_WINDOWS + 1, SEQUENCE_STRIDE):
            chunk = members[start : start + SEQUENCE_WINDOWS]
            labels = activity_of[chunk]
            acts = [a for i, a in enumerate(labels) if i == 0 or a != labels[i - 1]]
            rows.append((ordered["subject"].iat[chunk[0]], " ".join(acts), ordered["timestamp"].iat[chunk[0]]))
            values.append(signals[chunk].reshape(-1))
    steps = SEQUENCE_WINDOWS * N_STEPS // SEQUENCE_EVERY
    columns = [f"t{t:02d}_{axis}" for t in range(steps) for axis in "xyz"]
    out = pd.DataFrame(rows, columns=["subject", "activities", "timestamp"])
    out = pd.concat([out, pd.DataFrame(np.stack(values), columns=columns)], axis=1)
    return out.sort_values(["timestamp", "subject"], kind="mergesort").reset_index(drop=True)


def build_energy(seed: int = 0, days: int = 3 * 365) -> pd.DataFrame:
    """Return a seeded daily electricity-load series for forecasting (regression over time).

    Columns: ``date`` (from 2023-01-01), ``season`` (text: winter, spring, summer, autumn), ``weekday``
    (0 = Monday), ``temperature`` (deg C), ``humidity`` (%), ``wind`` (m/s), ``solar`` (W/m2: columns of very
    different scales, as weather data have) and the target ``load_mwh``: a slow upward trend, heating below
    15 deg C and cooling above 22, lower on weekends, and noise. Rows are in date order.
    """
    rng = np.random.RandomState(seed)
    dates = pd.date_range("2023-01-01", periods=days, freq="D")
    day = np.arange(days)
    year = 2 * np.pi * (dates.dayofyear.to_numpy() - 15) / 365.25
    temperature = 11 - 9 * np.cos(year) + rng.normal(0, 3, days)
    humidity = np.clip(70 + 10 * np.cos(year) + rng.normal(0, 8, days), 20, 100)
    wind = np.abs(rng.gamma(2.0, 2.0, days))
    solar = np.clip(180 - 120 * np.cos(year) + rng.normal(0, 40, days), 5, None)
    weekday = dates.dayofweek.to_numpy()
    load = (400 + 0.05 * day + 6 * np.clip(15 - temperature, 0, None) + 9 * np.clip(temperature - 22, 0, None)
            - 45 * (weekday >= 5) + 0.8 * wind - 0.05 * solar + rng.normal(0, 12, days))
    seasons = np.array(["winter", "spring", "summer", "autumn"])[(dates.month.to_numpy() % 12) // 3]
    return pd.DataFrame({
        "date": dates.strftime("%Y-%m-%d"), "season": seasons, "weekday": weekday,
        "temperature": temperature.round(4), "humidity": humidity.round(4), "wind": wind.round(4),
        "solar": solar.round(4), "load_mwh": load.round(4),
    })


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` to ``path`` byte-deterministically, atomically via a temporary file and os.replace."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=directory)
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the data file ordinary permissions.
        frame.to_csv(tmp, index=False, float_format="%.4f", lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


DATASETS: dict[str, Callable[[], pd.DataFrame]] = {
    "digits.csv": build_digits,
    "activity.csv": build_activity,
    "activity_sequences.csv": build_activity_sequences,
    "energy.csv": build_energy,
}
