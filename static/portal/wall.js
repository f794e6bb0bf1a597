// Listen wall: new live calls join as tiles without touching the running sessions.
(function () {
  "use strict";
  const wall = document.getElementById("wall");
  if (!wall) return;
  const limit = Number(wall.dataset.limit);
  const empty = wall.querySelector(".wall__empty");
  const tiles = () => wall.querySelectorAll("[data-wall-tile]");

  async function addTile(id) {
    if (wall.querySelector(`[data-wall-tile="${CSS.escape(id)}"]`) || tiles().length >= limit) return;
    const url = wall.dataset.tileUrl.replace("00000000-0000-0000-0000-000000000000", id);
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return; // not visible to this user, or gone
    const holder = document.createElement("div");
    holder.innerHTML = (await response.text()).trim();
    const tile = holder.firstElementChild;
    if (!tile || wall.querySelector(`[data-wall-tile="${CSS.escape(id)}"]`)) return;
    wall.insertBefore(tile, empty);
    empty.hidden = true;
    window.AnyReachListenPanel.mount(tile);
  }

  document.addEventListener("anyreach:conversation", (event) => {
    const conversation = event.detail && event.detail.conversation;
    if (conversation && conversation.is_active) addTile(conversation.id).catch(() => {});
  });
})();
