# SPDX-License-Identifier: MIT
# src/server: cfs-serve, the HTTP(S) object server
