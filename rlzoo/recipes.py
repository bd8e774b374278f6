"""Recipes: named, complete combinations of registered components."""

from rlzoo.registry import Registry

RECIPES: Registry = Registry("recipe", entry_point_group="rlzoo.recipes")
build = RECIPES.build
