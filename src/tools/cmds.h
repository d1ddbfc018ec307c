/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-store subcommands; each takes the arguments after its name and returns 0/1/2. */
#ifndef CFS_TOOLS_CMDS_H
#define CFS_TOOLS_CMDS_H

#include <stdbool.h>

#define EXIT_MISUSE 2

struct tool_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *synopsis;
	const char *summary;
	const char *help;       /* the command's options, for --help (NULL: none) */
	const char *value_opts; /* " -x --long " spellings of its options that take a value */
};

/* Global options shared by the subcommands. */
extern bool cfs_tool_quiet;
extern bool cfs_tool_no_progress;

int cfs_cmd_digest(int argc, char **argv);
int cfs_cmd_import(int argc, char **argv);
int cfs_cmd_verify(int argc, char **argv);
int cfs_cmd_stat(int argc, char **argv);
/* src/tools/cmd-image.c */
int cfs_cmd_objects(int argc, char **argv);
int cfs_cmd_missing_objects(int argc, char **argv);
int cfs_cmd_ls(int argc, char **argv);
int cfs_cmd_mkimage(int argc, char **argv);
int cfs_cmd_dump(int argc, char **argv);
int cfs_cmd_gc(int argc, char **argv);
/* src/tools/cmd-push.c */
int cfs_cmd_push(int argc, char **argv);

/* Prints "usage: cfs-store CMD SYNOPSIS" to stderr and returns EXIT_MISUSE. */
int cfs_tool_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Handles -h/--help for a subcommand; true when help was printed. */
bool cfs_tool_wants_help(int argc, char **argv, const char *cmd);

#endif
