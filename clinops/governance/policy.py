"""The governance rules (``params/policies/governance.yaml``) as one typed policy.

The field defaults and bounds below are the one statement of each rule; the policy file sets
values, and its reasons are written beside them. The file groups two sets of rules in
sections (``escalation:`` and ``override_review:``) that the policy stores flat with a prefix
(``escalate_*``, ``override_*``): the flat form is what settings and model bundles keep.

Examples
--------
>>> policy = GovernancePolicy(degradation_trigger=0.05, resume_roles=["reviewer"])
>>> policy.resume_roles, policy.escalate_imputed_share
(('reviewer',), 0.5)
>>> policy.to_dict()["override_rate_high"]
0.25
>>> GovernancePolicy(degradation_trigger=1.5)
Traceback (most recent call last):
...
clinops.policy.PolicyError: GovernancePolicy: degradation_trigger: Input should be less than 1, got 1.5

A file names the setting as it is written there:

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "governance.yaml"
>>> _ = path.write_text("escalation:\\n  imputed_share: 2\\n")
>>> GovernancePolicy.load(path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
clinops.policy.PolicyError: ...governance.yaml: escalation.imputed_share: Input should be less than 1, got 2
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StringConstraints, ValidationError
from pydantic import Strict as _Strict

from clinops.fairness import FairnessPolicy
from clinops.policy import PolicyError, PolicyModel, describe_validation_error, read_policy

__all__ = ["GovernancePolicy", "FILE_SECTIONS"]

#: Sections of the policy file -> the prefix their settings carry in :class:`GovernancePolicy`.
FILE_SECTIONS: dict[str, str] = {"escalation": "escalate_", "override_review": "override_"}

# A number written as a number: "0.05" in quotes is a mistake to name, not to convert.
Share = Annotated[float, _Strict()]
Roles = Annotated[tuple[Annotated[str, StringConstraints(min_length=1)], ...],
                  Field(min_length=1, description="a non-empty list of role names (clinops.privacy.ROLES)")]


class GovernancePolicy(PolicyModel):
    """Governance rules (``params/policies/governance.yaml``); see that file for the reasons.

    Attributes
    ----------
    degradation_trigger : relative AUROC drop that suspends an active model (0.05 = 5 %)
    fairness_alert_action : 'review' (record + review item) or 'suspend'
    fairness_policy : path of the fairness alert rules (thresholds live there, once)
    escalate_empty_set, escalate_ambiguous_set, escalate_out_of_distribution : per-prediction
        escalation rules of :func:`clinops.governance.escalation_reasons`
    escalate_contradicting_singleton : a {survives} conformal singleton beside a high calibrated
        probability escalates (on: the server's answers only; no workflow table counts escalations)
    escalate_imputed_share : a prediction with more than this share of its features imputed
        escalates (default 0.5, the cohort's rule: a stay with more than half of its features
        missing is excluded from training, so the model never learned from such a record)
    resume_roles : roles that may resume a suspended model
    suspend_roles : roles that may suspend by hand
    review_roles : roles that may record a periodic review and resolve review items
    require_resume_note : a resume must carry a non-empty note
    periodic_review_days : days between scheduled reviews (paper: e.g. quarterly)
    override_min_decisions : decisions needed before the override rate is judged
    override_rate_high : an override rate at or above this flags review
    override_flag_zero : a zero override rate (with enough decisions) flags review
    """

    degradation_trigger: Share = Field(0.05, gt=0, lt=1, description="a relative AUROC drop in (0, 1)")
    fairness_alert_action: Literal["review", "suspend"] = Field(
        "review", description="what a fairness alert does besides review; never retraining")
    fairness_policy: str | None = None
    escalate_empty_set: StrictBool = True
    escalate_ambiguous_set: StrictBool = True
    escalate_out_of_distribution: StrictBool = True
    escalate_contradicting_singleton: StrictBool = True
    escalate_imputed_share: Share = Field(0.5, ge=0, lt=1, description="imputed features above it escalate")
    resume_roles: Roles = ("reviewer",)
    suspend_roles: Roles = ("reviewer", "clinician")
    review_roles: Roles = ("reviewer",)
    require_resume_note: StrictBool = True
    periodic_review_days: StrictInt = Field(90, gt=0)
    override_min_decisions: StrictInt = Field(50, gt=0)
    override_rate_high: Share = Field(0.25, gt=0, le=1)
    override_flag_zero: StrictBool = True

    @classmethod
    def load(cls, path: str | Path, *, task: str | None = None) -> "GovernancePolicy":
        """Read a policy YAML; ``task`` applies that entry of its ``tasks:`` overrides.

        ``fairness_policy`` is resolved relative to the governance file's folder.

        Raises
        ------
        PolicyError : naming the file, the setting as written there, and the rule.
        """
        p = Path(path)
        flat, written_as = _flatten_sections(read_policy(p, task), where=p)
        if flat.get("fairness_policy"):
            fp = Path(flat["fairness_policy"])
            flat["fairness_policy"] = str(fp if fp.is_absolute() else (p.parent / fp).resolve())
        try:
            return cls.model_validate(flat)
        except ValidationError as exc:
            raise PolicyError(f"{p}: {describe_validation_error(exc, name=lambda f: written_as.get(f, f))}") from None

    def fairness(self, *, task: str | None = None) -> FairnessPolicy:
        """The :class:`clinops.fairness.FairnessPolicy` named by ``fairness_policy``."""
        if not self.fairness_policy:
            raise PolicyError("GovernancePolicy.fairness_policy: not set")
        return FairnessPolicy.load(self.fairness_policy, task=task)


def _flatten_sections(raw: dict[str, Any], *, where: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's settings with its sections flattened, and each flattened setting's name as
    the file writes it (``escalate_x`` -> ``escalation.x``), for error messages."""
    flat: dict[str, Any] = {}
    written_as: dict[str, str] = {}
    for key, value in raw.items():
        if key in FILE_SECTIONS:
            if not isinstance(value or {}, dict):
                raise PolicyError(f"{where}: {key}: must be a mapping of settings, got {value!r}")
            for k, v in (value or {}).items():
                flat[FILE_SECTIONS[key] + k] = v
                written_as[FILE_SECTIONS[key] + k] = f"{key}.{k}"
        else:
            flat[key] = value
    return flat, written_as
