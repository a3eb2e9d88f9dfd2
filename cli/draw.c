/* SPDX-License-Identifier: MIT */
/*
 * draw.c — dchat-draw: a trace of `dchatctl trace --format json` (on stdin,
 * or a file) drawn as a space-time diagram with cairo, to SVG, PNG or PDF
 * from the same drawing code.  dchatctl trace -o FILE.svg runs it.
 *
 * One lane per node, time to the right in the chosen order; REQUESTs and
 * REPLYs as arrows from their send to their receive, a reply that was
 * deferred drawn dashed and red from where it finally went, the deferral
 * itself marked where it was decided (a request queued for the token
 * too, open: no REPLY is owed for it); each critical section a bar on its
 * node's lane; each stored post a tick with its seq; the Lamport time
 * above every event and its vector clock below, where there is room; a
 * legend; and the nodes that did not give (all) their events named.
 */
#include <cairo.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tmodel.h"

#define MARGIN_LEFT     150.0
#define MARGIN_RIGHT    50.0
#define MARGIN_TOP      96.0
#define LEGEND_H        112.0
#define UNIT_PX         54.0            /* a step of the logical orders, when there is room */
#define WIDTH_MIN       720.0
#define WIDTH_MAX       20000.0         /* cairo's images stop at 32767; a viewer long before */
#define DOT_R           3.6
#define FONT            "sans-serif"

struct rgb { double r, g, b; };
static const struct rgb C_REQUEST = { 0.12, 0.38, 0.75 }, C_REPLY = { 0.16, 0.55, 0.20 },
                        C_DEFERRED = { 0.80, 0.12, 0.12 }, C_DEFER = { 0.95, 0.50, 0.05 }, C_CS = { 0.16, 0.55, 0.20 },
                        C_POST = { 0.10, 0.10, 0.10 }, C_OTHER = { 0.45, 0.45, 0.45 }, C_LANE = { 0.30, 0.30, 0.30 },
                        C_TEXT = { 0.10, 0.10, 0.10 }, C_LABEL = { 0.40, 0.40, 0.45 }, C_MISSING = { 0.75, 0.10, 0.10 };

struct canvas {
        const struct tmodel *m;
        cairo_t *cr;
        double width, height, plot_w, lane_gap, scale;
        double *label_end_above, *label_end_below;      /* per lane: where the last label ended */
};

static void color(cairo_t *cr, struct rgb c, double alpha)
{
        cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
}

static double lane_y(const struct canvas *c, unsigned lane)
{
        return MARGIN_TOP + 40 + lane * c->lane_gap;
}

static double event_x(const struct canvas *c, const struct tm_event *e)
{
        return MARGIN_LEFT + (e->x - c->m->x_min) * c->scale;
}

static void text(cairo_t *cr, double x, double y, double size, bool bold, const char *s)
{
        cairo_new_path(cr);
        cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
        cairo_set_font_size(cr, size);
        cairo_move_to(cr, x, y);
        cairo_show_text(cr, s);
        cairo_new_path(cr);
}

static double text_width(cairo_t *cr, double size, const char *s)
{
        cairo_text_extents_t ext;

        cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
        cairo_set_font_size(cr, size);
        cairo_text_extents(cr, s, &ext);
        return ext.x_advance;
}

static void arrow(cairo_t *cr, double x1, double y1, double x2, double y2, struct rgb c, bool dashed, double width)
{
        double a = atan2(y2 - y1, x2 - x1), len = hypot(x2 - x1, y2 - y1);
        double shorten = len > 3 * DOT_R ? DOT_R + 1 : 0;

        x1 += cos(a) * shorten, y1 += sin(a) * shorten;
        x2 -= cos(a) * shorten, y2 -= sin(a) * shorten;
        color(cr, c, 0.9);
        cairo_set_line_width(cr, width);
        if (dashed) {
                static const double d[] = { 6, 3 };
                cairo_set_dash(cr, d, 2, 0);
        }
        cairo_move_to(cr, x1, y1);
        cairo_line_to(cr, x2, y2);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        cairo_move_to(cr, x2, y2);
        cairo_line_to(cr, x2 - 9 * cos(a - 0.38), y2 - 9 * sin(a - 0.38));
        cairo_line_to(cr, x2 - 9 * cos(a + 0.38), y2 - 9 * sin(a + 0.38));
        cairo_close_path(cr);
        cairo_fill(cr);
}

static void dot(cairo_t *cr, double x, double y, struct rgb c, bool hollow)
{
        cairo_new_path(cr);     /* an arc joins the current point (where the last text ended) otherwise */
        cairo_arc(cr, x, y, DOT_R, 0, 2 * M_PI);
        if (hollow) {
                cairo_set_source_rgb(cr, 1, 1, 1);
                cairo_fill_preserve(cr);
                color(cr, c, 1);
                cairo_set_line_width(cr, 1.5);
                cairo_stroke(cr);
        } else {
                color(cr, c, 1);
                cairo_fill(cr);
        }
}

/* filled: a deferral (RA: this node owes the REPLY); open: a request queued for the token (it does not) */
static void diamond(cairo_t *cr, double x, double y, double r, struct rgb c, bool filled)
{
        cairo_move_to(cr, x, y - r);
        cairo_line_to(cr, x + r, y);
        cairo_line_to(cr, x, y + r);
        cairo_line_to(cr, x - r, y);
        cairo_close_path(cr);
        color(cr, c, 1);
        if (filled) {
                cairo_fill(cr);
                return;
        }
        cairo_set_line_width(cr, 1.6);
        cairo_stroke(cr);
}

/* A small label at x, above or below the lane, if it does not run into the one before it. */
static void label(struct canvas *c, unsigned lane, double x, bool above, const char *s)
{
        double size = 8.5, w = text_width(c->cr, size, s);
        double *end = above ? &c->label_end_above[lane] : &c->label_end_below[lane];
        double y = lane_y(c, lane) + (above ? -8 : 15);

        if (x - w / 2 < *end + 3)
                return;
        color(c->cr, above ? C_TEXT : C_LABEL, 1);
        text(c->cr, x - w / 2, y, size, false, s);
        *end = x + w / 2;
}

static void draw_lanes(struct canvas *c)
{
        const struct tmodel *m = c->m;
        cairo_t *cr = c->cr;
        char buf[256];

        for (unsigned l = 0; l < m->n_lanes; l++) {
                double y = lane_y(c, l);
                const struct tm_lane *ln = &m->lanes[l];
                color(cr, ln->missing ? C_MISSING : C_LANE, ln->missing ? 0.6 : 0.8);
                cairo_set_line_width(cr, 1.2);
                if (ln->missing) {
                        static const double d[] = { 4, 4 };
                        cairo_set_dash(cr, d, 2, 0);
                }
                cairo_move_to(cr, MARGIN_LEFT - 10, y);
                cairo_line_to(cr, MARGIN_LEFT + c->plot_w + 10, y);
                cairo_stroke(cr);
                cairo_set_dash(cr, NULL, 0, 0);
                color(cr, C_TEXT, 1);
                text(cr, 14, y + 5, 14, true, ln->name);
                if (ln->missing) {
                        snprintf(buf, sizeof buf, "%" PRIu64 " event(s) only:", ln->got);
                        color(cr, C_MISSING, 1);
                        text(cr, 14, y + 20, 9, false, buf);
                        /* why, cut to the margin */
                        snprintf(buf, sizeof buf, "%s", ln->why);
                        while (strlen(buf) > 3 && text_width(cr, 9, buf) > MARGIN_LEFT - 18)
                                strcpy(buf + strlen(buf) - 4, "...");
                        text(cr, 14, y + 31, 9, false, buf);
                }
        }
}

/* Critical sections: a bar from each cs-enter to its cs-exit (or to the lane's end). */
static void draw_sections(struct canvas *c)
{
        const struct tmodel *m = c->m;

        for (unsigned l = 0; l < m->n_lanes; l++) {
                double y = lane_y(c, l), start = -1;
                for (size_t i = m->lanes[l].first; i < m->lanes[l].first + m->lanes[l].n; i++) {
                        const struct tm_event *e = &m->ev[i];
                        if (e->kind == TK_CS_ENTER)
                                start = event_x(c, e);
                        else if (e->kind == TK_CS_EXIT || (i + 1 == m->lanes[l].first + m->lanes[l].n && start >= 0)) {
                                double end = event_x(c, e);
                                if (start < 0)
                                        start = MARGIN_LEFT - 6;        /* entered before the trace begins */
                                cairo_rectangle(c->cr, start, y - 7, end - start > 2 ? end - start : 2, 14);
                                color(c->cr, C_CS, 0.22);
                                cairo_fill_preserve(c->cr);
                                color(c->cr, C_CS, 0.9);
                                cairo_set_line_width(c->cr, 1.4);
                                cairo_stroke(c->cr);
                                start = -1;
                        }
                }
        }
}

static void draw_messages(struct canvas *c)
{
        const struct tmodel *m = c->m;

        for (size_t i = 0; i < m->n; i++) {
                const struct tm_event *e = &m->ev[i];
                bool request = e->kind == TK_REQUEST_SENT, reply = e->kind == TK_REPLY_SENT;
                if (!request && !reply)
                        continue;
                struct rgb col = request ? C_REQUEST : e->deferred ? C_DEFERRED : C_REPLY;
                double x1 = event_x(c, e), y1 = lane_y(c, e->lane);
                if (e->match != TM_NONE) {
                        const struct tm_event *r = &m->ev[e->match];
                        arrow(c->cr, x1, y1, event_x(c, r), lane_y(c, r->lane), col, e->deferred, e->deferred ? 2.0 : 1.3);
                } else if (e->peer >= 0) {
                        /* its receive is not in the trace: a stub towards the peer */
                        double y2 = lane_y(c, (unsigned) e->peer);
                        arrow(c->cr, x1, y1, x1 + 16, y1 + (y2 - y1) * 0.3, col, true, 1.0);
                }
        }
        /* receives whose send is not in the trace: a stub coming in */
        for (size_t i = 0; i < m->n; i++) {
                const struct tm_event *e = &m->ev[i];
                if ((e->kind != TK_REQUEST_RECEIVED && e->kind != TK_REPLY_RECEIVED) || e->match != TM_NONE ||
                    e->peer < 0)
                        continue;
                double x2 = event_x(c, e), y2 = lane_y(c, e->lane), y1 = lane_y(c, (unsigned) e->peer);
                arrow(c->cr, x2 - 16, y2 + (y1 - y2) * 0.3, x2, y2,
                      e->kind == TK_REQUEST_RECEIVED ? C_REQUEST : C_REPLY, true, 1.0);
        }
}

static void draw_events(struct canvas *c)
{
        const struct tmodel *m = c->m;
        size_t *idx = tm_sorted(m);
        char buf[64 + DCHAT_PEERS_MAX * 21];

        for (size_t k = 0; idx && k < m->n; k++) {
                const struct tm_event *e = &m->ev[idx[k]];
                double x = event_x(c, e), y = lane_y(c, e->lane);
                switch (e->kind) {
                case TK_REQUEST_SENT:
                        dot(c->cr, x, y, C_REQUEST, false);
                        break;
                case TK_REQUEST_RECEIVED:
                        dot(c->cr, x, y, C_REQUEST, true);
                        break;
                case TK_REPLY_SENT:
                        dot(c->cr, x, y, e->deferred ? C_DEFERRED : C_REPLY, false);
                        break;
                case TK_REPLY_RECEIVED:
                        dot(c->cr, x, y, C_REPLY, true);
                        break;
                case TK_REPLY_DEFERRED:
                        diamond(c->cr, x, y, 6, C_DEFER, true);
                        break;
                case TK_REQUEST_QUEUED:
                        diamond(c->cr, x, y, 6, C_DEFER, false);
                        break;
                case TK_CS_ENTER:
                case TK_CS_EXIT:
                        color(c->cr, C_CS, 1);
                        cairo_set_line_width(c->cr, 2.5);
                        cairo_move_to(c->cr, x, y - 10);
                        cairo_line_to(c->cr, x, y + 10);
                        cairo_stroke(c->cr);
                        break;
                case TK_POST_STORED:
                        color(c->cr, C_POST, 1);
                        cairo_set_line_width(c->cr, 1.6);
                        cairo_move_to(c->cr, x, y - 14);
                        cairo_line_to(c->cr, x, y + 4);
                        cairo_stroke(c->cr);
                        snprintf(buf, sizeof buf, "#%" PRIu64, e->seq);
                        color(c->cr, C_POST, 1);
                        text(c->cr, x + 2, y - 16, 9, true, buf);
                        continue;       /* its seq is its label */
                default:
                        color(c->cr, C_OTHER, 1);
                        cairo_set_line_width(c->cr, 1.5);
                        cairo_move_to(c->cr, x - 4, y - 4);
                        cairo_line_to(c->cr, x + 4, y + 4);
                        cairo_move_to(c->cr, x + 4, y - 4);
                        cairo_line_to(c->cr, x - 4, y + 4);
                        cairo_stroke(c->cr);
                        snprintf(buf, sizeof buf, "%s", proto_trace_kind_name(e->kind));
                        label(c, e->lane, x, true, buf);
                        continue;
                }
                snprintf(buf, sizeof buf, "%" PRIu64, e->lamport);
                label(c, e->lane, x, true, buf);
                size_t off = (size_t) snprintf(buf, sizeof buf, "[");
                for (unsigned j = 0; j < m->n_lanes; j++)
                        off += (size_t) snprintf(buf + off, sizeof buf - off, "%s%" PRIu64, j ? "," : "", tm_vc(m, e, j));
                snprintf(buf + off, sizeof buf - off, "]");
                label(c, e->lane, x, false, buf);
        }
        free(idx);
}

static void draw_axis(struct canvas *c)
{
        const struct tmodel *m = c->m;
        double y = lane_y(c, m->n_lanes - 1) + c->lane_gap * 0.55;
        double span = m->x_max - m->x_min;
        char buf[64];

        color(c->cr, C_LABEL, 1);
        cairo_set_line_width(c->cr, 0.8);
        cairo_move_to(c->cr, MARGIN_LEFT, y);
        cairo_line_to(c->cr, MARGIN_LEFT + c->plot_w, y);
        cairo_stroke(c->cr);
        /* about one tick per 100 px, at round values */
        double want = span / (c->plot_w / 100 > 1 ? c->plot_w / 100 : 1), step = 1;
        while (step * 10 <= want)
                step *= 10;
        if (step * 5 <= want)
                step *= 5;
        else if (step * 2 <= want)
                step *= 2;
        for (double v = ceil(m->x_min / step) * step; v <= m->x_max + 1e-9; v += step) {
                double x = MARGIN_LEFT + (v - m->x_min) * c->scale;
                cairo_move_to(c->cr, x, y);
                cairo_line_to(c->cr, x, y + 4);
                cairo_stroke(c->cr);
                if (m->order == TM_PHYSICAL)
                        snprintf(buf, sizeof buf, step >= 1000 ? "+%.0f ms" : step >= 100 ? "+%.1f ms" : "+%.3f ms",
                                 v / 1000.0);
                else
                        snprintf(buf, sizeof buf, "%.0f", v);
                text(c->cr, x - text_width(c->cr, 8.5, buf) / 2, y + 14, 8.5, false, buf);
        }
}

static void draw_title(struct canvas *c)
{
        const struct tmodel *m = c->m;
        char buf[512], when[64] = "";
        unsigned missing = 0;

        for (unsigned l = 0; l < m->n_lanes; l++)
                missing += m->lanes[l].missing;
        snprintf(buf, sizeof buf, "dchat: %zu events of %u node%s%s", m->n, m->n_lanes, m->n_lanes == 1 ? "" : "s",
                 missing ? " (some missing: see their lanes)" : "");
        color(c->cr, C_TEXT, 1);
        text(c->cr, 14, 30, 18, true, buf);
        if (m->t_min) {
                time_t t = (time_t) (m->t_min / 1000000);
                struct tm tm;
                if (localtime_r(&t, &tm))
                        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        }
        switch (m->order) {
        case TM_PHYSICAL:
                snprintf(buf, sizeof buf, "x: each node's own wall clock, from %s.%06u; the hosts' clocks need not "
                         "agree, so an arrow may even point back", when, (unsigned) (m->t_min % 1000000));
                break;
        case TM_LAMPORT:
                snprintf(buf, sizeof buf, "x: Lamport time (a receive is always right of its send; events the "
                         "clock does not tell apart stand side by side); first event at %s", when);
                break;
        case TM_VECTOR:
                snprintf(buf, sizeof buf, "x: depth in the causal order: each event right of everything that "
                         "happened before it (vector clocks); first event at %s", when);
                break;
        }
        color(c->cr, C_LABEL, 1);
        text(c->cr, 14, 52, 11, false, buf);
        text(c->cr, 14, 68, 11, false, "above an event: its Lamport time; below: its vector clock [one component "
             "per node, in lane order]");
}

static void draw_legend(struct canvas *c)
{
        double y = c->height - LEGEND_H + 34, x = 20;
        cairo_t *cr = c->cr;

        color(cr, C_TEXT, 1);
        text(cr, 14, c->height - LEGEND_H + 14, 11, true, "legend");
        arrow(cr, x, y, x + 44, y, C_REQUEST, false, 1.3);
        dot(cr, x, y, C_REQUEST, false);
        dot(cr, x + 44, y, C_REQUEST, true);
        color(cr, C_TEXT, 1);
        text(cr, x + 54, y + 4, 10, false, "REQUEST: send, receive");
        x += 210;
        arrow(cr, x, y, x + 44, y, C_REPLY, false, 1.3);
        dot(cr, x, y, C_REPLY, false);
        dot(cr, x + 44, y, C_REPLY, true);
        color(cr, C_TEXT, 1);
        text(cr, x + 54, y + 4, 10, false, "REPLY (permission)");
        x += 190;
        diamond(cr, x, y, 6, C_DEFER, true);
        color(cr, C_TEXT, 1);
        text(cr, x + 12, y + 4, 10, false, "reply deferred: the request waits");
        x += 240;
        diamond(cr, x, y, 6, C_DEFER, false);
        color(cr, C_TEXT, 1);
        text(cr, x + 12, y + 4, 10, false, "request queued for the token: it waits");
        y += 30;
        x = 20;
        arrow(cr, x, y, x + 44, y, C_DEFERRED, true, 2.0);
        dot(cr, x, y, C_DEFERRED, false);
        color(cr, C_TEXT, 1);
        text(cr, x + 54, y + 4, 10, false, "the deferred REPLY, sent at the exit");
        x += 260;
        cairo_rectangle(cr, x, y - 7, 44, 14);
        color(cr, C_CS, 0.22);
        cairo_fill_preserve(cr);
        color(cr, C_CS, 0.9);
        cairo_set_line_width(cr, 1.4);
        cairo_stroke(cr);
        color(cr, C_TEXT, 1);
        text(cr, x + 54, y + 4, 10, false, "critical section (cs-enter .. cs-exit)");
        x += 270;
        color(cr, C_POST, 1);
        cairo_set_line_width(cr, 1.6);
        cairo_move_to(cr, x, y - 12);
        cairo_line_to(cr, x, y + 4);
        cairo_stroke(cr);
        text(cr, x + 2, y - 13, 9, true, "#7");
        color(cr, C_TEXT, 1);
        text(cr, x + 22, y + 4, 10, false, "post stored as seq 7");
        x += 170;
        color(cr, C_OTHER, 1);
        cairo_move_to(cr, x - 4, y - 4);
        cairo_line_to(cr, x + 4, y + 4);
        cairo_move_to(cr, x + 4, y - 4);
        cairo_line_to(cr, x - 4, y + 4);
        cairo_stroke(cr);
        color(cr, C_TEXT, 1);
        text(cr, x + 12, y + 4, 10, false, "peer up, down, suspect, dead ...");
}

static int draw(const struct tmodel *m, const char *format, const char *out)
{
        struct canvas c = { .m = m };
        double span = m->x_max - m->x_min;
        size_t busiest = 1;

        for (unsigned l = 0; l < m->n_lanes; l++)
                if (m->lanes[l].n > busiest)
                        busiest = m->lanes[l].n;
        if (m->order == TM_PHYSICAL)
                c.plot_w = busiest * 40.0;              /* room for the lane with the most events */
        else    /* Lamport's side-by-side events need more room per step */
                c.plot_w = span * (m->order == TM_LAMPORT ? 2 * UNIT_PX : UNIT_PX);
        if (c.plot_w < WIDTH_MIN)
                c.plot_w = WIDTH_MIN;
        if (c.plot_w > WIDTH_MAX)
                c.plot_w = WIDTH_MAX;
        c.scale = span > 0 ? c.plot_w / span : 1;
        c.lane_gap = m->n_lanes <= 4 ? 120 : m->n_lanes <= 9 ? 92 : 70;
        c.width = MARGIN_LEFT + c.plot_w + MARGIN_RIGHT;
        if (c.width < 1100)
                c.width = 1100;
        c.height = MARGIN_TOP + 40 + (m->n_lanes - 1) * c.lane_gap + c.lane_gap * 0.55 + 30 + LEGEND_H;
        c.label_end_above = calloc(m->n_lanes, sizeof *c.label_end_above);
        c.label_end_below = calloc(m->n_lanes, sizeof *c.label_end_below);
        if (!c.label_end_above || !c.label_end_below) {
                fprintf(stderr, "dchat-draw: out of memory\n");
                free(c.label_end_above);
                free(c.label_end_below);
                return 1;
        }

        cairo_surface_t *s;
        if (!strcmp(format, "svg"))
                s = cairo_svg_surface_create(out, c.width, c.height);
        else if (!strcmp(format, "pdf"))
                s = cairo_pdf_surface_create(out, c.width, c.height);
        else
                s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int) ceil(c.width), (int) ceil(c.height));
        if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
                fprintf(stderr, "dchat-draw: cannot draw to %s: %s\n", out, cairo_status_to_string(cairo_surface_status(s)));
                cairo_surface_destroy(s);
                return 1;
        }
        c.cr = cairo_create(s);
        cairo_set_source_rgb(c.cr, 1, 1, 1);
        cairo_paint(c.cr);
        cairo_set_line_cap(c.cr, CAIRO_LINE_CAP_ROUND);
        draw_title(&c);
        draw_lanes(&c);
        draw_sections(&c);
        draw_messages(&c);
        draw_events(&c);
        draw_axis(&c);
        draw_legend(&c);
        cairo_destroy(c.cr);
        cairo_status_t st = CAIRO_STATUS_SUCCESS;
        if (!strcmp(format, "png"))
                st = cairo_surface_write_to_png(s, out);
        cairo_surface_finish(s);
        if (st == CAIRO_STATUS_SUCCESS)
                st = cairo_surface_status(s);
        cairo_surface_destroy(s);
        free(c.label_end_above);
        free(c.label_end_below);
        if (st != CAIRO_STATUS_SUCCESS) {
                fprintf(stderr, "dchat-draw: cannot write %s: %s\n", out, cairo_status_to_string(st));
                return 1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "format", required_argument, NULL, 'F' }, { "order", required_argument, NULL, 'O' },
                { "output", required_argument, NULL, 'o' }, { "help", no_argument, NULL, 'h' }, {}
        };
        const char *format = NULL, *out = NULL, *in = NULL;
        enum tm_order order = TM_VECTOR;
        struct tmodel m;
        int o, ret = 1;

        while ((o = getopt_long(argc, argv, "o:h", opts, NULL)) >= 0) {
                switch (o) {
                case 'F':
                        format = optarg;
                        break;
                case 'O':
                        if (tm_order_parse(optarg, &order) < 0) {
                                fprintf(stderr, "dchat-draw: --order is physical, lamport or vector\n");
                                return 2;
                        }
                        break;
                case 'o':
                        out = optarg;
                        break;
                case 'h':
                        printf("usage: dchat-draw [--format svg|png|pdf] [--order physical|lamport|vector] -o FILE "
                               "[TRACE.json]\n(the JSON Lines of dchatctl trace --format json; stdin without a file)\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc)
                in = argv[optind];
        if (!out) {
                fprintf(stderr, "dchat-draw: -o FILE is needed\n");
                return 2;
        }
        if (!format) {
                const char *dot = strrchr(out, '.');
                format = dot ? dot + 1 : "svg";
        }
        if (strcmp(format, "svg") && strcmp(format, "png") && strcmp(format, "pdf")) {
                fprintf(stderr, "dchat-draw: --format is svg, png or pdf, not '%s'\n", format);
                return 2;
        }
        FILE *f = in ? fopen(in, "r") : stdin;
        if (!f) {
                fprintf(stderr, "dchat-draw: cannot read %s: %s\n", in, strerror(errno));
                return 1;
        }
        tm_init(&m);
        char *line = NULL, err[1024];
        size_t cap = 0, lineno = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) >= 0) {
                lineno++;
                while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                        len--;
                if (len && tm_read_json(&m, line, (size_t) len, err, sizeof err) < 0) {
                        fprintf(stderr, "dchat-draw: %s:%zu: %s\n", in ? in : "stdin", lineno, err);
                        goto out;
                }
        }
        tm_finish(&m);
        if (m.n == 0 || m.n_lanes == 0) {
                fprintf(stderr, "dchat-draw: no events to draw\n");
                goto out;
        }
        tm_layout(&m, order);
        ret = draw(&m, format, out);
        /* cairo's font caches, so that a leak checker sees only leaks of ours */
        cairo_debug_reset_static_data();
out:
        free(line);
        if (f != stdin)
                fclose(f);
        tm_free(&m);
        return ret;
}
