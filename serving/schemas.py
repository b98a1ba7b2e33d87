"""Request and response bodies of the serving API (they are the OpenAPI schema)."""
from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, create_model

from clinops.features import FeatureManifest, FeatureSpec

# Identifiers: printable, no path separators, bounded (they end up in URLs and audit records).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


#: Largest finite float32, the model's input type: a larger number would reach XGBoost as inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Request bodies: an unknown field is an error, never ignored (data minimisation); types are
# strict ("71" is not a number, true is not 1) and numbers finite (no NaN or Infinity).
_REQUEST_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = _REQUEST_CONFIG


def _zero_or_one(value: Any) -> Any:
    # Literal[0, 1] alone lets true and 1.0 through (they compare equal to 1)
    if type(value) is not int or value not in (0, 1):
        raise ValueError(f"expected 0 or 1, got {json.dumps(value)}")
    return value


#: A 0/1 field: only the integers 0 and 1.
ZeroOrOne = Annotated[Literal[0, 1], BeforeValidator(_zero_or_one)]


def _numeric(spec: FeatureSpec) -> Any:
    """An optional finite number inside the feature's plausible range (and float32's)."""

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        problem = spec.number_problem(value)
        if problem is None and abs(value) > FLOAT32_MAX:
            problem = f"value {value:g} is beyond the model's float32 range (+/-{FLOAT32_MAX:.4g})"
        if problem is not None:
            raise ValueError(problem)
        return value

    return Annotated[float | None, AfterValidator(check)]


def _categorical(spec: FeatureSpec) -> Any:
    """The feature's categories; where every category is an integer code (a hospital's own
    table held integers, e.g. ``icu_type`` 1, 2, 3), the JSON integers too, as in the table."""
    categories = tuple(spec.categories or ())
    if not categories or not all(c.lstrip("-").isdigit() and str(int(c)) == c for c in categories):
        return Literal[categories]  # type: ignore[valid-type]
    codes = tuple(int(c) for c in categories)

    def as_category(value: Any) -> Any:
        if isinstance(value, (bool, float)):  # true and 2.0 are not the code 2
            raise ValueError(f"expected one of {', '.join(categories)}, got {json.dumps(value)}")
        return value if isinstance(value, str) else str(value)

    return Annotated[Literal[categories], BeforeValidator(as_category),  # type: ignore[valid-type]
                     WithJsonSchema({"anyOf": [{"type": "string", "enum": list(categories)},
                                               {"type": "integer", "enum": list(codes)}]})]


def features_model(manifest: FeatureManifest) -> type[BaseModel]:
    """A pydantic model whose fields are exactly the manifest's features.

    Every field is optional (missing values are imputed with the frozen medians). Types follow
    the feature kind, strictly; a number must be finite and inside the manifest's plausible
    range (:meth:`clinops.features.manifest.FeatureSpec.number_problem`, the one rule; the
    range is also in the schema as ``minimum``/``maximum``, exclusive where the range is open)
    and inside float32's range where the manifest leaves an end open.
    """
    fields: dict[str, Any] = {}
    for spec in manifest.specs:
        extra: dict[str, Any] = {}
        if spec.kind == "numeric":
            annotation: Any = _numeric(spec)
            lo, hi = spec.plausible_range or (-math.inf, math.inf)
            extra["minimum" if spec.range_closed[0] and math.isfinite(lo) else "exclusiveMinimum"] = (
                lo if math.isfinite(lo) else -FLOAT32_MAX)
            extra["maximum" if spec.range_closed[1] and math.isfinite(hi) else "exclusiveMaximum"] = (
                hi if math.isfinite(hi) else FLOAT32_MAX)
        elif spec.kind == "binary":
            annotation = ZeroOrOne | None
        else:
            annotation = _categorical(spec) | None
        description = f"{spec.unit}; {spec.aggregate}; plausible range {spec.range_text()}. {spec.justification}"
        fields[spec.name] = (annotation, Field(default=None, description=description, json_schema_extra=extra or None))
    return create_model(
        "Features",
        __config__=ConfigDict(**_REQUEST_CONFIG, title="Features",
                              json_schema_extra={"description": f"Features of manifest {manifest.name!r}; "
                                                 "any subset, missing ones are imputed"}),
        **fields,
    )


def prediction_request_model(manifest: FeatureManifest, purposes: list[str]) -> type[BaseModel]:
    """Body of ``POST /v1/predictions`` for this manifest and purpose registry."""
    features = features_model(manifest)
    purpose_type = Literal[tuple(purposes)]  # type: ignore[valid-type]
    return create_model(
        "PredictionRequest",
        __config__=_REQUEST_CONFIG,
        encounter_id=(str, Field(pattern=ID_PATTERN, description="ICU stay / encounter identifier")),
        purpose=(purpose_type, Field(description="Declared purpose; must be covered by the encounter's consent")),
        features=(features, Field(description="Feature values named as in the feature manifest")),
    )


class Contribution(BaseModel):
    feature: str
    value: float | str | None = Field(description="The submitted value (null when imputed)")
    contribution: float = Field(description="Exact TreeSHAP value, log-odds of the raw score")


class PredictionResponse(BaseModel):
    prediction_id: str
    model_version: str
    raw_score: float = Field(ge=0, le=1, description="Uncalibrated booster probability")
    probability: float = Field(ge=0, le=1, description="Isotonic-calibrated probability of death")
    conformal_set: list[Literal[0, 1]] = Field(description="Split-conformal prediction set at the bundle's confidence level")
    confidence_level: float
    low_confidence: bool = Field(description="True when the conformal set is {0, 1}")
    out_of_distribution: bool
    imputed: list[str] = Field(description="Features imputed with the frozen training medians")
    contributions: list[Contribution] = Field(description="Top features by absolute TreeSHAP value")
    governance_state: str
    needs_review: bool
    escalation_reasons: list[str]
    audit_record_id: str | None = Field(description="Audit record of this prediction (null when auditing is off)")
    audit_receipt: dict[str, Any] | None = Field(
        default=None, description="The audit trail's signed receipt for that record (seq, leaf hash, time, Ed25519 "
                                  "signature): check it with `clinops audit check-receipt`; null when auditing is off")


class OverrideRequest(_Strict):
    reason: str | None = Field(default=None, max_length=2000,
                               description="Optional free text; disagreeing needs no justification")


class OverrideResponse(BaseModel):
    prediction_id: str
    overridden_by: str
    override_rate: float
    audit_record_id: str | None


class ReviewCase(BaseModel):
    """A review item: an escalated prediction (``kind = prediction_escalation``) or a model-level
    issue (``suspension``, ``drift_watch``, ``fairness_alert``)."""

    item_id: int
    kind: str
    reason: str
    status: Literal["open", "resolved"]
    created_utc: str
    details: dict[str, Any] = Field(description="For a prediction: probability, conformal_set, reasons, "
                                                "contributions, model_version, audit_record_id")
    subject: str | None = Field(default=None, description="The prediction id for an escalated prediction")
    prediction_id: str | None = None
    overridden: bool = False
    resolved_utc: str | None = None
    reviewer: str | None = None
    role: str | None = None
    resolution: str | None = None
    note: str | None = None


class ReviewQueueResponse(BaseModel):
    items: list[ReviewCase]
    next_after: int | None = Field(description="Pass as ?after= for the next page (null: no more items)")


class ResolveRequest(_Strict):
    note: str | None = Field(default=None, max_length=2000)


class ResolveResponse(BaseModel):
    item_id: int
    status: str
    resolved_by: str
    audit_record_id: str | None


class GovernanceReviewRequest(_Strict):
    incidents: list[Annotated[str, Field(max_length=2000)]] = Field(default_factory=list, max_length=100,
                                 description="Incidents in the period (free text, one per entry)")
    documentation_complete: bool = Field(description="Model documentation checked and complete")
    sign_off: bool = Field(description="The reviewer signs the review off")
    note: str | None = Field(default=None, max_length=4000)


class GovernanceReviewResponse(BaseModel):
    review: dict[str, Any]
    audit_record_id: str | None


class ResumeRequest(_Strict):
    note: str = Field(min_length=1, max_length=4000, pattern=r"\S",
                      description="What was reviewed and why the model may serve unflagged again")


class SuspendRequest(_Strict):
    reason: str = Field(min_length=1, max_length=4000, pattern=r"\S", description="Why the model is stopped")


class GovernanceStateResponse(BaseModel):
    state: str
    model_version: str
    details: dict[str, Any] = Field(default_factory=dict)


class OutcomeRequest(_Strict):
    prediction_id: str = Field(pattern=ID_PATTERN)
    outcome: ZeroOrOne = Field(description="Observed outcome (1 = died within the horizon)")


class OutcomeResponse(BaseModel):
    prediction_id: str
    linked: bool
    window_size: int
    live: dict[str, Any]
    governance_state: str
    audit_record_id: str | None


class ErasureResponse(BaseModel):
    encounter_id: str
    consents_withdrawn: int
    audit: dict[str, Any]
    stores: dict[str, int] = Field(default_factory=dict, description="Rows deleted or redacted in the service's "
                                   "own stores: remembered predictions, linked outcomes, review items")


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model_version: str
    governance_state: str
