"""Identity settings of a playbook (`identity:`): which identifier types link people and how far each is trusted.

    >>> IdentitySettings().type("phone").max_customers
    5

Every setting has a built-in default, so a playbook without an `identity:` section links people sensibly: an
identifier that one person's channel systems share (an account or phone seen with up to 3-5 customer ids) links
them, one seen with more (a branch tablet, a shared family phone) does not. A playbook entry for a type overrides
only the keys it gives, e.g. `identity: {types: {device_id: {max_customers: 2}, loyalty_no: {normalise: compact}}}`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Normalise = Literal["text", "phone", "email", "compact"]


class IdentifierType(BaseModel):
    """How one identifier type is read and trusted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    link: bool = True  # false: values of this type are ignored (never link customer ids)
    normalise: Normalise = "text"  # phone: E.164; email: lower case; compact: no spaces/hyphens/dots, upper case
    max_customers: int = Field(default=3, ge=1)  # seen with more distinct customer ids: shared, does not link


# Built-in types; any other type is read as text and trusted like IdentifierType().
DEFAULT_TYPES = {
    "phone": IdentifierType(normalise="phone", max_customers=5),
    "email": IdentifierType(normalise="email", max_customers=3),
    "account_id": IdentifierType(normalise="compact", max_customers=5),
    "card_no": IdentifierType(normalise="compact", max_customers=3),
    "national_id": IdentifierType(normalise="compact", max_customers=3),
    "device_id": IdentifierType(normalise="text", max_customers=5),
}
CUSTOMER_TYPE = "customer_id"  # every row's customer_id is an identifier of this type


class IdentitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    phone_region: str = "CN"  # region of phone numbers written without a country code
    max_identifiers: int = Field(default=25, ge=2)  # a person (component) with more identifiers is not merged
    rounds: int = Field(default=3, ge=0, le=32)  # distributed large-star/small-star rounds before the finish
    types: dict[str, IdentifierType] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data):
        """A playbook's entry for a built-in type overrides only the keys it names."""
        if isinstance(data, dict) and isinstance(data.get("types"), dict):
            types = {}
            for name, given in data["types"].items():
                if name == CUSTOMER_TYPE:
                    raise ValueError("identity.types: customer_id is always an identifier and has no settings")
                base = DEFAULT_TYPES.get(name, IdentifierType()).model_dump()
                types[name] = {**base, **given} if isinstance(given, dict) else given
            data = {**data, "types": types}
        return data

    def type(self, name: str) -> IdentifierType:
        """The settings of identifier type `name` (the playbook's, else the built-in, else the default)."""
        return self.types.get(name) or DEFAULT_TYPES.get(name) or IdentifierType()
