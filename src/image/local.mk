# SPDX-License-Identifier: MIT
# src/image: read-only composefs (EROFS) image reader -> libcfsimage.a
CFS_IMAGE_LIBS =
