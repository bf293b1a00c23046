#!/bin/sh
# Whitespace removed so the layout of the JSON does not matter.
result=$(tr -d ' \t\r\n' </run/cloud-init/result.json 2>&1)
stages=$(tr -d ' \t\r\n' </run/cloud-init/status.json 2>&1)
if [ -s /run/cloud-init/result.json ] &&
    printf '%s' "$result" | grep -q '"errors":\[\]' &&
    ! printf '%s' "$result" | grep -q '"errors":\[[^]]' &&
    ! printf '%s' "$stages" | grep -q '"errors":\[[^]]'; then
    echo "cloud-init finished without errors"
else
    echo "result.json: $result; status.json: $stages"
    exit 1
fi
