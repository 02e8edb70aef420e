"""The bot's HTTP side: one aiohttp application (web/app.py) with the OAuth2 callback page,
`/health` and the business-process API (`/api/v1`).

Layering: web/ uses services/, storage/, mail/ and the leaf modules bot.config and bot.i18n;
never handlers/ nor bot.app. What the routes need is handed in as a `WebContext`
(web/context.py), built where the app is assembled (bot/app.py).
"""
