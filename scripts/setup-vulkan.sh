#!/usr/bin/env bash
# Installs the CPU Vulkan driver (Mesa lavapipe >= 25) that Dawn accepts, from Debian bookworm-backports.
# bookworm's own Mesa 22 is rejected by Dawn ("Vulkan shaderUniform*ArrayDynamicIndexing required").
#   sudo bash scripts/setup-vulkan.sh            # Vulkan for `npm test`
#   sudo bash scripts/setup-vulkan.sh --browser  # plus Debian chromium for `npm run test:browser`
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
list=/etc/apt/sources.list.d/bookworm-backports.list
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee "$list" >/dev/null
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1
if [ "${1:-}" = "--browser" ]; then
  $SUDO apt-get install -y -q --no-install-recommends chromium
fi
dpkg-query -W -f='${Package} ${Version}\n' mesa-vulkan-drivers libvulkan1
