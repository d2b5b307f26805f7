"""Building blocks shared by every request/response body: bounded names, scalar values and the
strict base class of request bodies.

Owns nothing but these types. May import pydantic only; every other module of
:mod:`assay.service.schemas` builds on it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: A name (experiment, parameter, metric, ...): 1 to 200 characters.
Name = Annotated[str, Field(min_length=1, max_length=200)]
#: A parameter value (a string one: at most 10,000 characters).
Scalar = Annotated[str, Field(max_length=10_000)] | int | float | bool
#: A free-form string (a constraint expression, an arm name, an env value): bounded.
Text = Annotated[str, Field(max_length=10_000)]


class Strict(BaseModel):
    """Base of request bodies: an unknown field is a 422 naming it, never silently dropped."""

    model_config = ConfigDict(extra="forbid")
