"""Vocabularies of the text columns, the chunk specification and the time-course building blocks every event table draws from."""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .. import reference as ref


# ---------------------------------------------------------------------------------------------
# vocabularies of the text columns
# ---------------------------------------------------------------------------------------------
CHART_TEXT = tuple(dict.fromkeys(
    [*ref.GCS_EYE.values(), *ref.GCS_VERBAL.values(), ref.GCS_VERBAL_ETT, *ref.GCS_MOTOR.values(),
     *ref.VENT_MODES, *ref.VENT_MODES_HAMILTON, ref.DEVICE_ETT, *ref.O2_DEVICES,
     *ref.HEART_RHYTHMS, *ref.ECTOPY_TYPES, *ref.TEMP_SITES]))
# Issue 15 traps, appended so the codes above keep their values: the two tracheostomy devices of
# mimic-code's Tracheostomy status (exact strings, one with a trailing space) and text charted
# under numeric items (value text, valuenum NULL).
TRACH_TUBE, TRACH_MASK = "Tracheostomy tube", "Trach mask "
NUMERIC_ITEM_TEXT = ("UNABLE TO ASSESS", "Pt refused")
CHART_TEXT = CHART_TEXT + tuple(t for t in (TRACH_TUBE, TRACH_MASK, *NUMERIC_ITEM_TEXT)
                                if t not in CHART_TEXT)
CT = {v: i for i, v in enumerate(CHART_TEXT)}
CHART_UNITS = tuple(dict.fromkeys(i.unitname for i in ref.CHART_ITEMS.values() if i.unitname))
_MAX_ITEM = 230_000
CHART_UOM_CODE = np.full(_MAX_ITEM, -1, dtype=np.int32)
for _iid, _it in ref.CHART_ITEMS.items():
    if _it.unitname and _it.param_type == "Numeric":
        CHART_UOM_CODE[_iid] = CHART_UNITS.index(_it.unitname)

GCS_EYE_CODE = np.array([-1] + [CT[ref.GCS_EYE[k]] for k in (1, 2, 3, 4)])
GCS_VERBAL_CODE = np.array([-1] + [CT[ref.GCS_VERBAL[k]] for k in (1, 2, 3, 4, 5)])
GCS_MOTOR_CODE = np.array([-1] + [CT[ref.GCS_MOTOR[k]] for k in (1, 2, 3, 4, 5, 6)])
# GCS deficit (15 - total) -> (eye, verbal, motor) components
GCS_SPLIT = np.array([(4, 5, 6), (4, 4, 6), (3, 4, 6), (3, 3, 6), (3, 3, 5), (2, 3, 5), (2, 2, 5),
                      (2, 2, 4), (1, 2, 4), (1, 2, 3), (1, 1, 3), (1, 1, 2), (1, 1, 1)])
DEVICE_CODE = np.array([CT[d] for d in ref.O2_DEVICES])
MODE_CODE = np.array([CT[m] for m in ref.VENT_MODES])
MODE_P = np.array([0.40, 0.15, 0.20, 0.10, 0.07, 0.04, 0.02, 0.02])
HAMILTON_CODE = np.array([CT[m] for m in ref.VENT_MODES_HAMILTON])
RHYTHM_CODE = np.array([CT[r] for r in ref.HEART_RHYTHMS])
SITE_CODE = np.array([CT[s] for s in ref.TEMP_SITES])

# items of each window-controlled chart feature (rows dropped in the window when "missing")
FEATURE_CHART_ITEMS = {
    "heart_rate": (220045,), "resp_rate": (220210, 224690), "map": (220052, 220181, 225312),
    "spo2": (220277,), "temperature": (223761, 223762, 224642),
    "gcs": (220739, 223900, 223901), "mech_vent": (223849, 229314, 226732, 223834, 223835, 220339),
}

LAB_ITEMS = tuple(sorted(ref.LAB_ITEMS))
LAB_UNITS = tuple(dict.fromkeys(i.uom for i in ref.LAB_ITEMS.values() if i.uom))
PANELS = {"chem": 1, "cbc": 2, "coag": 4, "lft": 8, "alb": 16, "bg": 32}
PRIORITIES = ("ROUTINE", "STAT")
LAB_FLAGS = ("abnormal",)

INPUT_TEXT = ("01-Drips", "02-Fluids (Crystalloids)", "03-IV Fluid Bolus", "05-Med Bolus",
              "08-Antibiotics (IV)", "Continuous Med", "Continuous IV", "Bolus", "Drug Push",
              "Main order parameter", "Changed", "FinishedRunning", "Stopped")
IT = {v: i for i, v in enumerate(INPUT_TEXT)}
INPUT_UNITS = ("mg", "units", "ml", "mEq", "dose", "mcg/kg/min", "units/hour", "mL/hour",
               "mcg/hour")
IU = {v: i for i, v in enumerate(INPUT_UNITS)}

PROC_TEXT = ("min", "None", "Ventilation", "Intubation/Extubation", "Invasive Lines", "Imaging",
             "Procedures", "Task", "FinishedRunning", "Left Radial", "Right Radial",
             "Left Femoral", "Invasive Arterial")
PT = {v: i for i, v in enumerate(PROC_TEXT)}

ID_SPACE = 2**26   # specimen / order ids are scrambled into [1, 2**26]
LATENT = ("z", "circ", "renal", "liver", "coag", "infl", "resp")


@dataclass
class ChunkSpec:
    """Everything :func:`make_chunk` needs; plain arrays so it pickles to worker processes."""

    index: int
    n_chunks: int
    seed: int
    stays: dict
    admissions: dict
    visits: dict
    caregivers: np.ndarray
    providers: tuple


def scramble(counter: np.ndarray, salt: int) -> np.ndarray:
    """Distinct counters in [0, 2**26) -> distinct ids in [1, 2**26] that look random."""
    mult = (0x9E3779B1 + 2 * salt) | 1            # odd multiplier: a bijection modulo 2**26
    shifted = (counter.astype(np.uint64) + np.uint64(7_654_321)) % np.uint64(ID_SPACE)
    return ((shifted * np.uint64(mult)) % np.uint64(ID_SPACE)).astype(np.int64) + 1


def unit_hash(keys: np.ndarray, salt: int) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per integer key (stay id, ...), drawn from no rng.

    The issue 15 traps pick their stays and times with it, so adding them leaves every value
    drawn from the tables' random streams as it was.

    Examples
    --------
    >>> u = unit_hash(np.arange(10_000), salt=1)
    >>> bool((u >= 0).all() and (u < 1).all()), round(float(u.mean()), 1)
    (True, 0.5)
    """
    x = np.asarray(keys).astype(np.uint64) + np.uint64((salt * 0x632BE59BD9B4E019) % 2**64)
    x = (x ^ (x >> np.uint64(31))) * np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(32))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def ar1_noise(rng: np.random.Generator, n: int, phi: float = 0.8) -> np.ndarray:
    """AR(1)-like noise with unit variance and lag-1 correlation ``phi``.

    White noise filtered by the AR(1) impulse response ``phi**k`` truncated at k = 24
    (``0.8**24 < 0.005``), in numpy only. It runs across stay boundaries: harmless, since
    the first hours of a stay still get N(0, 1) noise.
    """
    kernel = phi ** np.arange(25) * np.sqrt(1 - phi * phi)
    return np.convolve(rng.standard_normal(n), kernel)[:n]


def time_course(x: np.ndarray, rec: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    return x - 0.6 * rec * np.maximum(x, 0.0) + 1.5 * ramp
