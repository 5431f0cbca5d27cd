/*
 * http-socket — the listening socket each libmicrohttpd daemon is given,
 * for the public, the admin and the checkout listener alike.
 */
#pragma once

struct MHD_Daemon;

/*
 * http_mhd_socket() - a duplicate of the listening socket @fd for one
 * libmicrohttpd daemon, which closes it in MHD_stop_daemon(); @fd itself
 * stays open (under socket activation it is systemd's and must go on
 * listening). Returns the new descriptor or a negative errno.
 *
 * No listener is ever quiesced: in libmicrohttpd 0.9.75,
 * MHD_quiesce_daemon() on an epoll daemon that runs its own threads races
 * them over taking the socket out of the epoll set and aborts the process
 * when the loser's epoll_ctl() finds it gone ("Failed to remove listen FD
 * from epoll set", seen at SIGTERM). While the daemon drains, a request
 * that starts is answered 503 instead, and http_mhd_stop() ends it.
 */
int http_mhd_socket(int fd);

/* http_mhd_socket_unused() - close @copy after MHD_start_daemon() failed. */
void http_mhd_socket_unused(int copy);

/*
 * http_mhd_stop() - MHD_stop_daemon() of a daemon started on a
 * http_mhd_socket() duplicate, leaving the listening socket itself as it
 * was. NULL-safe.
 */
void http_mhd_stop(struct MHD_Daemon *daemon);
