#!/bin/sh
# The host writes the recipe's exclude-docs and exclude-locales to $SLIPWAY_DATA/recipe.env.
. "$SLIPWAY_DATA/recipe.env"
problems=
if [ "${EXCLUDE_DOCS:-0}" = 1 ]; then
    docs=$(find /usr/share/doc -type f ! -name copyright 2>/dev/null | head -n 5)
    [ -n "$docs" ] && problems="$problems documentation files present: $(echo $docs);"
fi
if [ "${EXCLUDE_LOCALES:-0}" = 1 ]; then
    locales=$(find /usr/share/locale -mindepth 1 -maxdepth 1 -type d 2>/dev/null |
        grep -Ev '/(en|en_[A-Z]+|en@[a-z]+|C|C\.UTF-8)$' | while read -r dir; do
            find "$dir" -type f -name '*.mo' | head -n 1
        done | head -n 5)
    [ -n "$locales" ] && problems="$problems translations present: $(echo $locales);"
fi
if [ -n "$problems" ]; then
    echo "$problems"
    exit 1
fi
if [ "${EXCLUDE_DOCS:-0}" != 1 ] && [ "${EXCLUDE_LOCALES:-0}" != 1 ]; then
    echo "the recipe keeps documentation and translations; nothing to check"
else
    echo "no documentation or translations that the recipe excludes"
fi
