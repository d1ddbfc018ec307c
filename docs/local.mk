# SPDX-License-Identifier: MIT
# docs: man pages and guides
dist_man_MANS += docs/cfs-store.1 docs/cfs-cache.1
EXTRA_DIST += docs/architecture.md docs/benchmarks.md

# Every installed man page's footer names this version, whatever its source's .TH line says
# (the sources keep their names; the installed copies are rewritten in place).
cfs_man_version = $(SED) -e '/^\.TH /s/^\(\.TH [^ ]* [^ ]* "[^"]*" \)"[^"]*"/\1"cfscache $(PACKAGE_VERSION)"/'
install-data-hook: install-man-version
install-man-version:
	@for p in $(dist_man_MANS); do \
	  case $$p in *.1) ;; *) continue ;; esac; \
	  f="$(DESTDIR)$(man1dir)/`basename $$p`"; \
	  test -f "$$f" || continue; \
	  $(cfs_man_version) "$$f" >"$$f.tmp" && mv -f "$$f.tmp" "$$f" || exit 1; \
	done
.PHONY: install-man-version
