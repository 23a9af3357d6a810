"""GraphQL validation as aquadoggo does it: a ``String`` variable may feed its string scalars.

Apps written for aquadoggo declare ``$publicKey: String!`` and pass it to ``nextArgs(publicKey:
PublicKey!)``; the standard rule (*All Variable Usages Are Allowed*) rejects that, aquadoggo's
server does not. :class:`LenientVariablesInAllowedPositionRule` replaces the standard rule.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLType,
    OperationDefinitionNode,
    ValidationRule,
    VariableDefinitionNode,
    specified_rules,
    type_from_ast,
)
from graphql.validation.rules.variables_in_allowed_position import (
    VariablesInAllowedPositionRule,
    allowed_variable_usage,
)

from .scalars import STRING_SCALARS

__all__ = ["RULES", "LenientVariablesInAllowedPositionRule"]


def _string_compatible(var_type: GraphQLType, location_type: GraphQLType) -> bool:
    """A ``String`` variable (any nullability) used where one of our string scalars goes."""
    while True:
        if isinstance(var_type, GraphQLNonNull):
            var_type = var_type.of_type
        if isinstance(location_type, GraphQLNonNull):
            location_type = location_type.of_type
        if isinstance(var_type, GraphQLList) and isinstance(location_type, GraphQLList):
            var_type, location_type = var_type.of_type, location_type.of_type
            continue
        return (
            isinstance(var_type, GraphQLNamedType)
            and isinstance(location_type, GraphQLNamedType)
            and var_type.name == "String"
            and location_type.name in STRING_SCALARS
        )


class LenientVariablesInAllowedPositionRule(ValidationRule):
    """*All Variable Usages Are Allowed*, also letting ``String`` variables feed string scalars."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._definitions: dict[str, VariableDefinitionNode] = {}

    def enter_operation_definition(self, *_args: Any) -> None:  # noqa: D102 - a visitor hook
        self._definitions = {}

    def enter_variable_definition(  # noqa: D102 - a visitor hook
        self, node: VariableDefinitionNode, *_args: Any
    ) -> None:
        self._definitions[node.variable.name.value] = node

    def leave_operation_definition(  # noqa: D102 - a visitor hook
        self, operation: OperationDefinitionNode, *_args: Any
    ) -> None:
        schema = self.context.schema
        for usage in self.context.get_recursive_variable_usages(operation):
            name = usage.node.name.value
            definition = self._definitions.get(name)
            if definition is None or usage.type is None:
                continue
            var_type = type_from_ast(schema, definition.type)
            if var_type is None:
                continue
            if allowed_variable_usage(
                schema, var_type, definition.default_value, usage.type, usage.default_value
            ) or _string_compatible(var_type, usage.type):
                continue
            self.report_error(
                GraphQLError(
                    f"Variable '${name}' of type '{var_type}' used"
                    f" in position expecting type '{usage.type}'.",
                    [definition, usage.node],
                )
            )


RULES = tuple(
    LenientVariablesInAllowedPositionRule if rule is VariablesInAllowedPositionRule else rule
    for rule in specified_rules
)
"""graphql-core's specified rules with the lenient variable rule in place of the standard one."""
