"""One module per demonstration, each defining ``DEMO`` (a :class:`optimlab.learn.demo.Demo`);
:mod:`optimlab.learn.registry` finds them."""
