/*  serve: the client commands that ask for recommendations (see serve.c). */
#ifndef STRATA_TOOLS_SERVE_H
#define STRATA_TOOLS_SERVE_H

int recommend_main (int argc, char **argv);
int similar_main (int argc, char **argv);
int search_main (int argc, char **argv);

#endif
