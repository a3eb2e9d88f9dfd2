/* SPDX-License-Identifier: MIT */
/* explain.h — the journal catalog's explanations, built into dchatctl (cli/catalog.c is made from it). */
#pragma once

struct catalog_entry {
        const char *event;      /* DCHAT_EVENT, "request-sent" */
        const char *id;         /* MESSAGE_ID */
        const char *subject;    /* with @FIELD@ where the event's fields go */
        const char *text;
};
extern const struct catalog_entry catalog[];
extern const unsigned catalog_n;
