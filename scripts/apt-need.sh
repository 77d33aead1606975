#!/bin/sh
# Usage: scripts/apt-need.sh PACKAGE PATH
# Install Debian's PACKAGE with apt-get unless PATH exists. Runs apt-get as root, or through
# sudo when that needs no password; otherwise says what to install and fails.
set -e
package=$1
path=$2
[ -e "$path" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "this demo needs $path from Debian's $package package: sudo apt-get install $package" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "this demo needs $path from Debian's $package package, and there is no apt-get" >&2
    exit 1
fi
echo "installing Debian's $package (for $path)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package"
[ -e "$path" ] || { echo "$package is installed but $path is still missing" >&2; exit 1; }
