"""The drift policy (``params/policies/drift.yaml``): PSI levels and one section per detector.

The sections are ``psi`` (:class:`PsiSettings`), ``monitor`` (:class:`MonitorSettings`: the
false-alarm budget and the feature streams) and one per entry of
:data:`clinops.drift.detectors.DETECTORS`, whose ``Settings`` class states its fields and
defaults: the policy model is built from the registry, so a new detector's section needs no
edit here. A detector runs when its section's ``enabled`` is true (its class's default when the
file says nothing: ADWIN and Page-Hinkley on, CUSUM off).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, create_model, model_validator

from clinops.drift.detectors import DETECTORS, DetectorSettings
from clinops.drift.psi import PSI_EPS
from clinops.policy import PolicyError, PolicyModel

__all__ = ["DriftPolicy", "MonitorSettings", "PsiSettings", "PolicyError"]


class PsiSettings(PolicyModel):
    """``psi:`` in ``drift.yaml``: bins, levels and window of the feature PSI."""

    bins: int = Field(10, ge=2, description="reference-quantile bins per numeric feature")
    watch: float | int = Field(0.1, gt=0, description="PSI at or above: 'watch'")
    alert: float | int = Field(0.2, gt=0, description="PSI at or above: 'drift'")
    eps: float = Field(PSI_EPS, gt=0, lt=0.01, description="proportion used for an empty bin")
    window: int = Field(500, ge=10, description="admissions per PSI evaluation")
    hysteresis: float | int = Field(0.02, ge=0, description="how far below a level a feature leaves it")

    @model_validator(mode="after")
    def _levels_ordered(self) -> "PsiSettings":
        if not self.watch < self.alert:
            raise ValueError(f"watch: must be below alert ({self.alert}), got {self.watch}")
        if not self.hysteresis < self.watch:
            raise ValueError(f"hysteresis: must be below watch ({self.watch}), got {self.hysteresis}")
        return self


class MonitorSettings(PolicyModel):
    """``monitor:`` in ``drift.yaml``: the false-alarm budget and the feature-stream detectors.

    With ``false_alarms_per_30_days`` set, every detector's threshold is computed from it
    (:mod:`clinops.drift.thresholds`, Bonferroni over all detectors the monitor runs) instead of
    being read from its section; ``null`` keeps the sections' values (bundles written before
    the budget existed).
    """

    false_alarms_per_30_days: float | int | None = Field(None, gt=0, description="budget of the whole monitor")
    admissions_per_hour: float | int = Field(10, gt=0, description="arrival rate the budget is stated at")
    feature_streams: bool = Field(False, description="run detectors on every feature stream as well as the score")
    feature_odds_ratio: float | int = Field(2.0, gt=1, description="binary features: CUSUM designed for this odds change, both ways")


# One field per registered detector, typed by its own Settings (default: its defaults).
_Sections = create_model(
    "_Sections", __base__=PolicyModel,
    psi=(PsiSettings, Field(default_factory=PsiSettings)),
    monitor=(MonitorSettings, Field(default_factory=MonitorSettings)),
    **{name: (cls.Settings, Field(default_factory=cls.Settings)) for name, cls in DETECTORS.items()},
)


class DriftPolicy(_Sections):  # type: ignore[misc, valid-type]
    """Drift settings: ``psi`` and one section per detector (see ``drift.yaml`` for the reasons).

    Built from the file's nested sections (:meth:`load`) or from the flat form the model bundle
    stores (:meth:`to_dict`: ``psi_window``, ``adwin_delta``, ``ph_threshold_sd``, ...). The
    Page-Hinkley settings are in units of the reference score SD, so one policy serves tasks
    with very different score scales.

    Examples
    --------
    >>> policy = DriftPolicy()
    >>> policy.psi_alert, policy.page_hinkley.threshold_sd, policy.enabled_detectors
    (0.2, 25.0, ['adwin', 'page_hinkley'])
    >>> with_cusum = DriftPolicy.from_mapping({"cusum": {"enabled": True, "threshold": 4}})
    >>> with_cusum.enabled_detectors
    ['adwin', 'page_hinkley', 'cusum']
    >>> DriftPolicy(**with_cusum.to_dict()) == with_cusum        # the flat form round-trips
    True
    >>> budgeted = DriftPolicy.from_mapping({"monitor": {"false_alarms_per_30_days": 1, "feature_streams": True}})
    >>> DriftPolicy(**budgeted.to_dict()) == budgeted
    True
    >>> DriftPolicy.from_mapping({"psi": {"watch": 0.3}}, where="drift.yaml")
    Traceback (most recent call last):
    ...
    clinops.policy.PolicyError: drift.yaml: psi: Value error, watch: must be below alert (0.2), got 0.3, got {'watch': 0.3}
    """

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        """Accept the flat form (``psi_bins=10, adwin_delta=...``) beside the nested sections."""
        if not isinstance(data, Mapping):
            return data
        prefixes = {"psi_": "psi", "monitor_": "monitor", **{c.flat_prefix: name for name, c in DETECTORS.items()}}
        nested: dict[str, Any] = {}
        for key, value in data.items():
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if key in prefixes.values() or prefix is None:
                nested[key] = value  # a section, or unknown (refused as such below)
            else:
                nested.setdefault(prefixes[prefix], {})[key[len(prefix):]] = value
        return nested

    # the PSI settings under the flat names the rest of the package reads
    psi_bins = property(lambda self: self.psi.bins)
    psi_watch = property(lambda self: self.psi.watch)
    psi_alert = property(lambda self: self.psi.alert)
    psi_eps = property(lambda self: self.psi.eps)
    psi_window = property(lambda self: self.psi.window)
    psi_hysteresis = property(lambda self: self.psi.hysteresis)

    @property
    def detector_settings(self) -> dict[str, DetectorSettings]:
        """name -> its section, every registered detector (enabled or not), registry order."""
        return {name: getattr(self, name) for name in DETECTORS}

    @property
    def enabled_detectors(self) -> list[str]:
        """The detectors that run, registry order."""
        return [name for name, s in self.detector_settings.items() if s.enabled]

    def to_dict(self) -> dict[str, Any]:
        """The flat form the model bundle stores: ``psi_*``, then each enabled detector's settings
        under its prefix; ``<prefix>enabled`` only where it differs from the detector's default."""
        out: dict[str, Any] = {f"psi_{k}": v for k, v in self.psi.model_dump().items()}
        out.update({f"monitor_{k}": v for k, v in self.monitor.model_dump().items()
                    if v != MonitorSettings.model_fields[k].default})
        for name, cls in DETECTORS.items():
            settings, prefix = getattr(self, name), cls.flat_prefix
            if settings.enabled != cls.Settings.model_fields["enabled"].default:
                out[f"{prefix}enabled"] = settings.enabled
            if settings.enabled:
                out.update({f"{prefix}{k}": v for k, v in settings.model_dump(exclude={"enabled"}).items()})
        return out
